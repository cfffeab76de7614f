"""Metrics for one-hot (single-label) data and the BenthicNet paper's "singular F1".

**Singular F1** — Xu et al., "Hierarchical Multi-Label Classification with Missing Information
for Benthic Habitat Imagery", arXiv:2409.06618 (2024); definition taken from the authors'
evaluation notebook ``test_depth.ipynb`` in ``DalhousieAI/benthicnet_probes`` (cells "decompose
and score labels"), re-implemented here (not copied). Labels are reduced to each sample's most
specific ones and scored per node, depth by depth:

- at depth d, the samples counted are those with a known positive node at depth d;
- for each such sample, each known target node at depth d is a true positive if predicted, else a
  false negative; each known predicted node at depth d that is not a target is a false positive;
- per node ``F1 = 2PR / (P + R)`` (0 when undefined), averaged (macro) over the nodes seen at
  depth d as a target or as a false positive;
- the head's singular F1 is the mean of the depth F1s weighted by the number of target nodes at
  each depth.

For flat one-hot data with one predicted class per sample this is sklearn's multiclass
``f1_score(average="macro")`` (labels present in the targets or the predictions).
"""

from __future__ import annotations

import numpy as np


def singular_f1(pred: np.ndarray, targets: np.ndarray, mask: np.ndarray,
                depth: np.ndarray | None = None) -> dict[str, float]:
    """Singular F1 of one head; also ``singular_f1@d{d}`` per depth.

    Args:
        pred, targets, mask: ``(rows, nodes)`` bool over one head's nodes (mask 1 = known).
        depth: ``(nodes,)`` depth of each node (1 = root); None for a flat head.
    """
    pred, targets, mask = (np.asarray(x, dtype=bool) for x in (pred, targets, mask))
    depth = np.ones(pred.shape[1], dtype=np.int64) if depth is None else np.asarray(depth)
    pos, predicted = targets & mask, pred & mask
    tp = (pos & predicted).sum(axis=0)
    fn = (pos & ~predicted).sum(axis=0)
    fp = np.zeros(pred.shape[1], dtype=np.int64)
    for d in np.unique(depth):  # depths, each vectorised over samples and nodes
        at = depth == d
        rows = pos[:, at].any(axis=1)  # only samples with a known target at depth d count
        fp[at] = (predicted[rows][:, at] & ~pos[rows][:, at]).sum(axis=0)
    return singular_f1_from_counts(tp, fp, fn, depth)


def singular_f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray,
                            depth: np.ndarray) -> dict[str, float]:
    """Singular F1 from ``(nodes,)`` counts of one head (see module doc).

    ``tp``/``fn`` count known targets (predicted / missed); ``fp`` counts known predicted
    non-targets only in samples with a known target at the node's depth.
    """
    tp, fp, fn, depth = (np.asarray(x) for x in (tp, fp, fn, depth))
    out: dict[str, float] = {}
    weighted, total = 0.0, 0
    for d in range(1, int(depth.max()) + 1):  # a handful of depths, each vectorised over nodes
        at = depth == d
        t_p, f_p, f_n = tp[at], fp[at], fn[at]
        seen = (t_p + f_n + f_p) > 0
        if not seen.any():
            continue
        f1 = np.where(seen, 2 * t_p / np.maximum(2 * t_p + f_p + f_n, 1), 0.0)[seen].mean()
        count = int((t_p + f_n).sum())
        out[f"singular_f1@d{d}"] = float(f1)
        weighted += f1 * count
        total += count
    out["singular_f1"] = weighted / total if total else float("nan")
    return out


def is_one_hot(targets: np.ndarray, mask: np.ndarray) -> bool:
    """True when every labelled row has exactly one known positive (a single-label dataset)."""
    pos = (np.asarray(targets, dtype=bool) & np.asarray(mask, dtype=bool)).sum(axis=1)
    labelled = np.asarray(mask, dtype=bool).any(axis=1)
    return bool(labelled.any() and (pos[labelled] == 1).all())


def accuracy(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Top-1 accuracy for one-hot rows: argmax of ``probs`` over known nodes is the target.

    Rows without exactly one known positive are left out. Shapes ``(rows, classes)``.
    """
    probs = np.asarray(probs)
    targets = np.asarray(targets, dtype=bool)
    mask = np.ones_like(targets) if mask is None else np.asarray(mask, dtype=bool)
    pos = targets & mask
    rows = np.add.reduce(pos, axis=1, dtype=np.int64) == 1
    if not rows.any():
        return float("nan")
    scores = np.where(mask, probs, -np.inf)  # all rows at once: no copies of selected rows
    return float(np.mean((np.argmax(scores, axis=1) == np.argmax(pos, axis=1))[rows]))
