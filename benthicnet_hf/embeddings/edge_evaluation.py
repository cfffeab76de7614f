"""Edge classification as in Dhall's ETHEC study: is the ordered pair ``(u, v)`` an edge?

Every ordered pair of distinct labels is classified: positive when ``u`` is a proper ancestor of
``v`` (the transitive closure, as the study's ``check_graph_embedding``), negative otherwise. A pair
is predicted an edge when its energy is at most a threshold. The study picked the threshold that
maximises F1 on the very pairs it scored; here it is chosen on *validation* data (held-out edges
plus a random share of the negative pairs, so that the class ratio matches the full set),, and
the best-threshold F1 is reported beside it for comparison with the published table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .edges import EdgeSplit

if TYPE_CHECKING:  # annotations only: label_embedding loads geoopt
    from .label_embedding import LabelEmbedding

__all__ = ["EdgeMetrics", "all_pair_energies", "best_f1_threshold", "edge_metrics", "evaluate_edges"]


@dataclass(frozen=True)
class EdgeMetrics:
    """TPR, TNR, precision and F1 of one threshold over positive and negative pairs."""

    tpr: float
    tnr: float
    precision: float
    f1: float
    threshold: float
    positives: int
    negatives: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def edge_metrics(pos_energy: np.ndarray, neg_energy: np.ndarray, threshold: float) -> EdgeMetrics:
    """Metrics of "edge iff energy <= threshold" over ``(P,)`` positive and ``(N,)`` negative energies."""
    pos_energy, neg_energy = np.asarray(pos_energy), np.asarray(neg_energy)
    if pos_energy.size == 0 or neg_energy.size == 0:
        raise ValueError(f"need positive and negative pairs, got {pos_energy.size} and {neg_energy.size}")
    tp = int((pos_energy <= threshold).sum())
    fp = int((neg_energy <= threshold).sum())
    fn = pos_energy.size - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return EdgeMetrics(tpr=tp / pos_energy.size, tnr=1.0 - fp / neg_energy.size, precision=precision, f1=f1,
                       threshold=float(threshold), positives=int(pos_energy.size), negatives=int(neg_energy.size))


def best_f1_threshold(pos_energy: np.ndarray, neg_energy: np.ndarray) -> float:
    """The energy threshold maximising F1 of "edge iff energy <= t" (vectorised over all cut points)."""
    pos_energy, neg_energy = np.asarray(pos_energy, dtype=np.float64), np.asarray(neg_energy, dtype=np.float64)
    energies = np.concatenate([pos_energy, neg_energy])
    is_pos = np.concatenate([np.ones(pos_energy.size), np.zeros(neg_energy.size)])
    order = np.argsort(energies, kind="stable")
    e, y = energies[order], is_pos[order]
    # a cut is only valid after the last of a run of equal energies (ties are predicted together)
    last = np.r_[e[1:] != e[:-1], True]
    tp = np.cumsum(y)[last]
    fp = np.cumsum(1 - y)[last]
    f1 = 2 * tp / (2 * tp + fp + (pos_energy.size - tp))
    return float(e[last][int(np.argmax(f1))])


@torch.no_grad()
def all_pair_energies(embedding: LabelEmbedding, max_elements: int = 2 ** 24) -> np.ndarray:
    """``(n, n)`` energies, ``[u, v] = E(u, v)`` (diagonal included), computed in row chunks."""
    w = embedding.weight.detach()
    n, d = w.shape
    rows = max(1, max_elements // max(n * d, 1))
    out = np.empty((n, n), dtype=np.float32)
    for start in range(0, n, rows):
        u = w[start:start + rows]
        b = u.shape[0]
        e = embedding.energy_of(u.repeat_interleave(n, dim=0), w.repeat(b, 1))
        out[start:start + b] = e.view(b, n).numpy()
    return out


def evaluate_edges(embedding: LabelEmbedding, split: EdgeSplit, seed: int = 0) -> dict[str, dict[str, float]]:
    """Classify every ordered pair of labels; threshold from validation data.

    Returns ``{"all": ..., "test": ..., "best_threshold": ...}`` metric dicts: ``all`` scores all
    positive and negative pairs at the validation threshold (the study's reconstruction task),
    ``test`` the held-out test edges against all negatives, ``best_threshold`` all pairs at the
    F1-maximising threshold (the study's protocol).
    """
    if len(split.val) == 0:
        raise ValueError(f"head {split.taxonomy.name!r}: no validation edges to choose a threshold on "
                         "(the hierarchy has too few non-basic edges; raise val_fraction)")
    energy = all_pair_energies(embedding)
    negative = ~split.closure
    np.fill_diagonal(negative, False)
    pos_all, neg_all = energy[split.closure], energy[negative]
    rng = np.random.default_rng(seed)
    # as many validation negatives per validation edge as the full set has negatives per edge
    val_neg = neg_all[rng.random(neg_all.size) < len(split.val) / pos_all.size]
    threshold = best_f1_threshold(energy[split.val[:, 0], split.val[:, 1]], val_neg)
    test_pos = energy[split.test[:, 0], split.test[:, 1]] if len(split.test) else pos_all
    return {
        "all": edge_metrics(pos_all, neg_all, threshold).as_dict(),
        "test": edge_metrics(test_pos, neg_all, threshold).as_dict(),
        "best_threshold": edge_metrics(pos_all, neg_all, best_f1_threshold(pos_all, neg_all)).as_dict(),
    }
