"""Rare-node variants on the HMC benchmarks (Xu et al. 2026, arXiv 2602.08986): networks, losses, metrics.

Loss kinds (``--loss`` of ``benchmarks/hmc.py``): ``weighted`` (node-wise imbalance weights, Sec. 3.1),
``weighted+focal-bma`` / ``weighted+focal-gmu`` (plus the focal factor ``f_min + u^γ`` from the
uncertainty of a ``K``-member ensemble, Sec. 3.2–3.3). Plain ``mcloss`` stays in :mod:`.train`.

Evaluation beside AU(PRC), at a threshold on the (ensemble-mean) coherent test probabilities:
micro/macro recall and F1 over all evaluated nodes and over the rarest ones, the bottom quartile of
training frequency among evaluated nodes with a training positive (macro over nodes with a test
positive).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ..hierarchy import Hierarchy
from ..rare_nodes import EnsembleMLP, MCDropoutEnsemble, RareNodeLoss, StackedLinear, imbalance_weights
from .network import HMCNetwork

RARE_LOSSES = ("weighted", "weighted+focal-bma", "weighted+focal-gmu")
ENSEMBLES = ("heads", "full", "dropout")


def focal_mode_of(kind: str) -> str | None:
    """``"weighted+focal-gmu"`` → ``"gmu"``; ``None`` for losses without a focal factor."""
    return kind.split("focal-", 1)[1] if "focal-" in kind else None


class SharedEncoderHeads(nn.Module):
    """``K`` output layers over one C-HMCNN(h) body: ``(B, D)`` → ``(K, B, N)`` logits.

    The rare-node paper's ensemble ("K heads on one encoder"): the hidden layers are shared, each
    member has its own final ``Linear(hidden, N)`` (batched in one :class:`StackedLinear`).
    """

    def __init__(self, input_dim: int, hidden: int, hierarchy: Hierarchy, num_layers: int, dropout: float,
                 members: int) -> None:
        super().__init__()
        body = HMCNetwork(input_dim, hidden, hierarchy, num_layers, dropout).layers
        self.encoder = body[:-1]  # Linear → ReLU → Dropout, (num_layers − 1) times
        self.heads = StackedLinear(body[-1].in_features, hierarchy.num_nodes, members)

    def forward(self, x: Tensor) -> Tensor:
        return self.heads(self.encoder(x))


def build_network(
    input_dim: int, hidden: int, hierarchy: Hierarchy, num_layers: int, dropout: float, members: int = 1,
    ensemble: str = "heads",
) -> nn.Module:
    """C-HMCNN(h) network(s): ``(B, D)`` → ``(B, N)`` logits, or ``(K, B, N)`` with ``members`` = K > 1.

    Args:
        ensemble: ``"heads"`` (K output layers on one shared body, the paper's ensemble),
            ``"full"`` (K independent networks, one batched :class:`EnsembleMLP`) or ``"dropout"``
            (one network, K MC-dropout passes).
    """
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {ENSEMBLES}, got {ensemble!r}")
    if members > 1 and ensemble == "heads":
        return SharedEncoderHeads(input_dim, hidden, hierarchy, num_layers, dropout, members)
    if members > 1 and ensemble == "full":
        return EnsembleMLP(input_dim, hidden, hierarchy.num_nodes, members, num_layers, dropout)
    net = HMCNetwork(input_dim, hidden, hierarchy, num_layers, dropout)
    return MCDropoutEnsemble(net, members) if members > 1 else net


class MaskedRareLoss(nn.Module):
    """:class:`RareNodeLoss` with the roots masked out: ``(logits (K, B, N) | (B, N), targets, step) → scalar``.

    Args:
        hierarchy: the label hierarchy.
        to_eval: ``(N,)`` bool, the non-root nodes (the training mask).
        fit_targets: ``(rows, N)`` training targets the imbalance weights are computed from.
        kind: one of :data:`RARE_LOSSES`.
        options: passed to :class:`RareNodeLoss` (``apply_to``, ``focal_k``, ``focal_min``, ``omega``,
            ``scheduler``, ``period``, ``scheduler_k``, ``mixed_lambda``).
    """

    def __init__(self, hierarchy: Hierarchy, to_eval: np.ndarray, fit_targets: Tensor | np.ndarray, kind: str,
                 **options) -> None:
        super().__init__()
        if kind not in RARE_LOSSES:
            raise ValueError(f"unknown rare-node loss {kind!r}; choose one of {RARE_LOSSES}")
        mask = torch.as_tensor(to_eval, dtype=torch.float32).unsqueeze(0)
        omega = options.get("omega", 0.25)
        weights = imbalance_weights(hierarchy, fit_targets, mask.expand(len(fit_targets), -1), omega=omega)
        self.loss = RareNodeLoss(hierarchy, weights, focal_mode=focal_mode_of(kind), **options)
        self.register_buffer("mask", mask)

    def forward(self, logits: Tensor, targets: Tensor, step: int = 0) -> Tensor:
        return self.loss(logits, targets, self.mask.expand_as(targets), step=step).loss


def rare_node_indices(fit_targets: np.ndarray, to_eval: np.ndarray, quantile: float = 0.25) -> np.ndarray:
    """Evaluated nodes in the bottom ``quantile`` of training frequency, among those with a training positive."""
    freq = np.asarray(fit_targets).sum(0)
    candidates = np.flatnonzero(np.asarray(to_eval, dtype=bool) & (freq > 0))
    if len(candidates) == 0:
        return candidates
    return candidates[freq[candidates] <= np.quantile(freq[candidates], quantile)]


def recall_f1(y: np.ndarray, pred: np.ndarray, nodes: np.ndarray) -> dict[str, float]:
    """Micro and macro recall and F1 of ``pred`` against ``y`` (both ``(rows, N)`` 0/1) over ``nodes``.

    ``macro_*`` average over the nodes with at least one positive in ``y`` (0 if none).
    ``macro_*_zero`` average over every node in ``nodes``, a node without test positives counting
    as recall 0 and F1 0: the per-node F1 of the rare-node paper's public code (``node_f1``), i.e.
    sklearn's macro average with ``zero_division=0``.
    """
    yt, yp = y[:, nodes].astype(bool), pred[:, nodes].astype(bool)
    tp, fp, fn = (yt & yp).sum(0), (~yt & yp).sum(0), (yt & ~yp).sum(0)
    has = (tp + fn) > 0
    recall = np.divide(tp, tp + fn, out=np.zeros(len(tp)), where=has)
    f1_den = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, f1_den, out=np.zeros(len(tp)), where=f1_den > 0)
    return {
        "macro_recall_zero": float(recall.mean()) if len(tp) else 0.0,
        "macro_f1_zero": float(f1.mean()) if len(tp) else 0.0,
        "micro_recall": float(tp.sum() / max(tp.sum() + fn.sum(), 1)),
        "micro_f1": float(2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)),
        "macro_recall": float(recall[has].mean()) if has.any() else 0.0,
        "macro_f1": float(f1[has].mean()) if has.any() else 0.0,
    }


def rare_and_all_metrics(
    y_test: np.ndarray, probs: np.ndarray, fit_targets: np.ndarray, to_eval: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """``rare_*`` and ``all_*`` micro/macro recall and F1 at ``threshold``, plus ``rare_nodes`` (count)."""
    pred = probs > threshold
    rare = rare_node_indices(fit_targets, to_eval)
    out: dict[str, float] = {"rare_nodes": int(len(rare)), "threshold": threshold}
    out.update({f"all_{k}": v for k, v in recall_f1(y_test, pred, np.flatnonzero(to_eval)).items()})
    out.update({f"rare_{k}": v for k, v in recall_f1(y_test, pred, rare).items()})
    return out
