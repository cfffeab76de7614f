"""Thresholded metrics over the known bits: F1, sample-wise bit F1, exact match, per-level scores.

``pred``, ``targets``, ``mask`` are ``(rows, nodes)`` bool (``pred = probs > threshold``, strict, as
the BenthicNet paper); only bits with ``mask`` 1 (known) count. F1 is ``2 tp / (2 tp + fp + fn)``
(sklearn's definition).

- micro P/R/F1: confusion counts summed over every known bit;
- macro P/R/F1: mean over the nodes with at least one known positive *and* one known negative
  (sklearn ``average="macro"`` restricted to those nodes, ``zero_division=0``): a node without
  both classes cannot be scored, so it is left out rather than counted as perfect;
- bit F1: per sample with a known positive and a known negative, the mean of the F1 of the
  positive bits and the F1 of the negative bits over its known nodes; a class absent from both the
  target and the prediction scores 1 (other samples: NaN). The paper's per-depth "bit F1" is
  ``hml_f1`` (:mod:`.paper`);
- exact match per depth: a sample is right at depth d when all its known bits at depth d are
  right (samples with no known bit at depth d do not count);
- per-level (ETHEC-style) micro and macro P/R/F1 over the nodes of each depth.
"""

from __future__ import annotations

import numpy as np


def _ratio(num: np.ndarray, den: np.ndarray, empty: float = 0.0) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), empty)


def confusion_counts(pred: np.ndarray, targets: np.ndarray, mask: np.ndarray, axis: int | None = 0):
    """``(tp, fp, fn, tn)`` over known bits, summed along ``axis`` (None = everything)."""
    pos, neg = targets & mask, ~targets & mask
    tp = (pred & pos).sum(axis)
    fp = (pred & neg).sum(axis)
    return tp, fp, pos.sum(axis) - tp, neg.sum(axis) - fp


def f1_scores(pred: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Micro and macro precision, recall and F1 (macro over nodes with both known classes)."""
    tp, fp, fn, tn = confusion_counts(pred, targets, mask, axis=0)
    return _scores_from_counts(tp, fp, fn, fp + tn)


def _scores_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, num_neg: np.ndarray) -> dict[str, float]:
    """Micro/macro P/R/F1 from ``(nodes,)`` counts; macro over nodes with known positives and negatives."""
    t, f_p, f_n = tp.sum(), fp.sum(), fn.sum()
    out = {
        "precision_micro": float(_ratio(t, t + f_p)),
        "recall_micro": float(_ratio(t, t + f_n)),
        "f1_micro": float(_ratio(2 * t, 2 * t + f_p + f_n)),
    }
    has_pos = ((tp + fn) > 0) & (np.asarray(num_neg) > 0)
    if has_pos.any():
        out["precision_macro"] = float(_ratio(tp, tp + fp)[has_pos].mean())
        out["recall_macro"] = float(_ratio(tp, tp + fn)[has_pos].mean())
        out["f1_macro"] = float(_ratio(2 * tp, 2 * tp + fp + fn)[has_pos].mean())
    else:
        out.update(precision_macro=float("nan"), recall_macro=float("nan"), f1_macro=float("nan"))
    return out


def bit_f1(pred: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(rows,)`` mean of positive-bit and negative-bit F1 per sample; NaN without both known classes."""
    tp, fp, fn, tn = confusion_counts(pred, targets, mask, axis=1)
    f1_pos = _ratio(2 * tp, 2 * tp + fp + fn, empty=1.0)
    f1_neg = _ratio(2 * tn, 2 * tn + fn + fp, empty=1.0)  # for the negative class fp and fn swap
    return np.where((tp + fn > 0) & (tn + fp > 0), (f1_pos + f1_neg) / 2, np.nan)


def _per_level_counts(values: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """``(rows, max_depth)`` row sums of bool ``values`` over the nodes of each depth."""
    order = np.argsort(depth, kind="stable")
    starts = np.searchsorted(depth[order], np.arange(1, int(depth.max()) + 1))
    present = np.isin(np.arange(1, int(depth.max()) + 1), depth)
    sums = np.add.reduceat(values[:, order], np.minimum(starts, len(order) - 1), axis=1, dtype=np.int64)
    return np.where(present[None, :], sums, 0)


def exact_match(pred: np.ndarray, targets: np.ndarray, mask: np.ndarray,
                depth: np.ndarray | None = None) -> np.ndarray:
    """``(rows, max_depth)`` 1.0/0.0 exact match per depth, NaN where no bit of that depth is known.

    ``depth=None`` returns ``(rows, 1)``: all known bits of the row right.
    """
    depth = np.ones(pred.shape[1], dtype=np.int64) if depth is None else np.asarray(depth)
    wrong = _per_level_counts(mask & (pred != targets), depth)
    known = _per_level_counts(mask, depth)
    return np.where(known > 0, (wrong == 0).astype(np.float64), np.nan)


def level_scores(pred: np.ndarray, targets: np.ndarray, mask: np.ndarray,
                 depth: np.ndarray) -> dict[str, float]:
    """ETHEC-style breakdown: ``level{d}/{precision,recall,f1}_{micro,macro}`` for each depth d."""
    tp, fp, fn, tn = confusion_counts(pred, targets, mask, axis=0)
    out: dict[str, float] = {}
    for d in range(1, int(np.max(depth)) + 1):
        at = np.asarray(depth) == d
        if at.any():
            for key, value in _scores_from_counts(tp[at], fp[at], fn[at], fp[at] + tn[at]).items():
                out[f"level{d}/{key}"] = value
    return out
