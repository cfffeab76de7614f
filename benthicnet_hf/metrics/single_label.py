"""Metrics for one-hot (single-label) data, and the BenthicNet paper's "singular F1" on bool arrays.

**Singular precision / recall / F1** — Xu et al., arXiv:2409.06618 (2024), as computed by the
authors' notebook ``test_depth_group.ipynb`` (``DalhousieAI/benthicnet_probes``); the definition
and the deviations are in :mod:`.paper`, which holds the arithmetic (:func:`.paper.singular_scores`).
Here: the counts from bool ``(rows, nodes)`` arrays of one head.

For flat one-hot data with one predicted class per sample the singular F1 is sklearn's multiclass
``f1_score(average="macro")`` (labels present in the targets or the predictions).
"""

from __future__ import annotations

import numpy as np

from .paper import singular_scores


def singular_f1(pred: np.ndarray, targets: np.ndarray, mask: np.ndarray,
                depth: np.ndarray | None = None) -> dict[str, float]:
    """Singular precision/recall/F1 of one head; also ``singular_f1@d{d}`` per depth.

    Args:
        pred, targets, mask: ``(rows, nodes)`` bool over one head's nodes (mask 1 = known);
            ``pred`` is ``probs > threshold``.
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
    return singular_scores(tp, fp, fn, depth)


def is_one_hot(targets: np.ndarray, mask: np.ndarray) -> bool:
    """True when every labelled row has exactly one known positive (a single-label dataset)."""
    pos = (np.asarray(targets, dtype=bool) & np.asarray(mask, dtype=bool)).sum(axis=1)
    labelled = np.asarray(mask, dtype=bool).any(axis=1)
    return bool(labelled.any() and (pos[labelled] == 1).all())


def _one_hot_decisions(probs: np.ndarray, targets: np.ndarray,
                       mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(true, predicted)`` class indices ``(rows',)`` of the rows with exactly one known positive
    (arg-max over known nodes), or None when there is no such row."""
    probs = np.asarray(probs)
    targets = np.asarray(targets, dtype=bool)
    mask = np.ones_like(targets) if mask is None else np.asarray(mask, dtype=bool)
    pos = targets & mask
    rows = np.add.reduce(pos, axis=1, dtype=np.int64) == 1
    if not rows.any():
        return None
    scores = np.where(mask, probs, -np.inf)  # all rows at once: no copies of selected rows
    return np.argmax(pos, axis=1)[rows], np.argmax(scores, axis=1)[rows]


def accuracy(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Top-1 accuracy for one-hot rows: argmax of ``probs`` over known nodes is the target.

    Rows without exactly one known positive are left out. Shapes ``(rows, classes)``.
    """
    decided = _one_hot_decisions(probs, targets, mask)
    if decided is None:
        return float("nan")
    true, pred = decided
    return float(np.mean(true == pred))


def top1_macro_f1(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Macro F1 of the arg-max decisions for one-hot rows (sklearn's multiclass ``f1_score(average="macro")``).

    The arg-max is taken over known nodes; rows without exactly one known positive are left out.
    Classes are those present among the targets or the decisions (sklearn's default ``labels``);
    a class with no true and no predicted row is not averaged. Shapes ``(rows, classes)``.
    """
    decided = _one_hot_decisions(probs, targets, mask)
    if decided is None:
        return float("nan")
    true, pred = decided
    k = np.shape(probs)[1]
    tp = np.bincount(true[true == pred], minlength=k)
    n_true, n_pred = np.bincount(true, minlength=k), np.bincount(pred, minlength=k)
    present = (n_true + n_pred) > 0
    f1 = 2 * tp[present] / (n_true[present] + n_pred[present])  # 2TP / (2TP + FP + FN)
    return float(f1.mean())
