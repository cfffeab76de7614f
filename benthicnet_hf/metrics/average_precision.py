"""Average precision over the known bits: micro, per node (macro) and per sample.

All functions are exact dataset-level figures equal to ``sklearn.metrics.average_precision_score``
on the same masked arrays, ties included: a positive scored ``s`` contributes the precision over
all known bits scored ``>= s``:

    AP = (1 / P) * sum over known positives i of  tp(>= s_i) / n(>= s_i)

Shapes: ``probs``, ``targets``, ``mask`` are ``(rows, nodes)``; mask 1 = known.

- **micro AP**: one ranking of every known (sample, node) bit.
- **per-node AP / macro AP**: one ranking per node; the macro figure averages the nodes that have
  at least one known positive *and* one known negative (elsewhere AP is undefined or trivially 1).
- **per-sample AP** (``sample_ap``): one ranking per sample over that sample's known nodes, for
  samples with at least one known positive *and* one known negative (elsewhere NaN: a sample with
  only positives would score 1 whatever the scores); optionally restricted to nodes of depth <= d
  for every d. Not the paper's HML AP (that is :mod:`.paper`).
- **thresholded AP**: AP of the 0/1 predictions ``probs > threshold`` (strict, as the BenthicNet
  reference's ``sigmoid(.) > 0.5``). Reported separately: it is a different quantity.
"""

from __future__ import annotations

import numpy as np

from .inputs import check_metric_inputs, ranking_keys
from .ranking import (
    ColumnKeys,
    ap_by_depth,
    counts_at_positives_by_group,
    grouped_micro_ap,
    mean_per_segment,
    rank_in_columns,
    rank_in_rows,
    sorted_positives,
)


# ------------------------------------------------------------- on precomputed keys (internal)
def node_ap_from_ranks(col: np.ndarray, n: np.ndarray, tp: np.ndarray,
                       num_pos: np.ndarray, num_known: np.ndarray) -> np.ndarray:
    """``(nodes,)`` AP per column from :func:`.ranking.rank_in_columns`; NaN without both classes."""
    ap = mean_per_segment(col, tp / n, num_pos)
    return np.where((num_pos > 0) & (num_known > num_pos), ap, np.nan)


def sample_ap_by_depth_from_keys(
    keys: np.ndarray, positive: np.ndarray, known: np.ndarray, depth: np.ndarray
) -> np.ndarray:
    """``(rows, max_depth)`` per-sample AP over known nodes of depth <= d (column d - 1)."""
    rows, nodes = keys.shape
    max_depth = int(depth.max())
    level_cols = [np.flatnonzero(depth == d) for d in range(1, max_depth + 1)]
    _, row, col, key = sorted_positives(keys, positive, np.zeros(nodes, dtype=np.int64))
    counts = counts_at_positives_by_group(keys, level_cols, row, key)
    ap = ap_by_depth(counts, row, key, depth[col] - 1, rows)
    up_to = depth[None, :] <= np.arange(1, max_depth + 1)[:, None]  # (max_depth, nodes)
    negatives = (known & ~positive).view(np.uint8) @ up_to.T.astype(np.uint8)  # (rows, max_depth)
    return np.where(negatives > 0, ap, np.nan)


# ------------------------------------------------------------------------------- public API
def _floor(keys: np.ndarray, positive: np.ndarray) -> int:
    """Smallest key of a known positive (2 if none): lower keys never count in an AP."""
    return int(np.min(keys, where=positive, initial=np.iinfo(np.int32).max)) if positive.any() else 2


def _keys(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked inputs as ``(keys int32, positive bool, known bool)``, all ``(rows, nodes)``."""
    probs, targets, mask = check_metric_inputs(probs, targets, mask)
    positive = targets & mask
    return ranking_keys(probs, positive, mask), positive, mask


def micro_average_precision(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None) -> float:
    """AP of all known bits ranked together (``probs``/``targets``/``mask`` ``(rows, nodes)``)."""
    keys, positive, _ = _keys(probs, targets, mask)
    ranked = np.extract(keys >= _floor(keys, positive), keys)  # known items not below every positive
    return grouped_micro_ap(ranked, [(0, ranked.size)])[1][0]


def node_average_precision(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``(nodes,)`` AP per node over its known samples; NaN where undefined (see module doc)."""
    keys, positive, known = _keys(probs, targets, mask)
    num_pos, num_known = positive.sum(axis=0), known.sum(axis=0)
    column_keys = ColumnKeys(num_known, _floor(keys, positive))
    column_keys.add(keys)
    col, n, tp, _ = rank_in_columns(column_keys, num_pos)
    return node_ap_from_ranks(col, n, tp, num_pos, num_known)


def macro_average_precision(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean per-node AP over nodes with >= 1 known positive and >= 1 known negative."""
    ap = node_average_precision(probs, targets, mask)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


def sample_average_precision(
    probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None,
    depth: np.ndarray | None = None,
) -> np.ndarray:
    """``(rows, max_depth)`` per-sample AP over known nodes of depth <= d; see the module doc.

    ``depth=None`` ranks all nodes together and returns ``(rows, 1)``. NaN where the sample has
    no known positive or no known negative of depth <= d.
    """
    keys, positive, known = _keys(probs, targets, mask)
    rows, nodes = keys.shape
    if depth is None:
        row, n, tp = rank_in_rows(keys, known.sum(axis=1))
        ap = mean_per_segment(row, tp / n, np.bincount(row, minlength=rows))
        return np.where((known & ~positive).any(axis=1), ap, np.nan)[:, None]
    depth = np.asarray(depth, dtype=np.int64)
    if depth.shape != (nodes,) or (depth < 1).any():
        raise ValueError(f"depth must be ({nodes},) positive integers, got shape {depth.shape}")
    return sample_ap_by_depth_from_keys(keys, positive, known, depth)


def thresholded_ap_from_counts(tp: np.ndarray, fp: np.ndarray, num_pos: np.ndarray,
                               num_neg: np.ndarray) -> np.ndarray:
    """AP of 0/1 scores from confusion counts (vectorised); NaN without positives.

    Two thresholds: score 1 (precision tp / (tp + fp), recall tp / P) and score 0 (every known
    bit, precision P / (P + N)) reached only if some positive was predicted 0.
    """
    tp, fp, num_pos, num_neg = (np.asarray(x, dtype=np.float64) for x in (tp, fp, num_pos, num_neg))
    with np.errstate(invalid="ignore", divide="ignore"):
        first = np.where(tp + fp > 0, (tp / num_pos) * tp / np.maximum(tp + fp, 1), 0.0)
        second = ((num_pos - tp) / num_pos) * num_pos / (num_pos + num_neg)
        return np.where(num_pos > 0, first + second, np.nan)


def mean_sample_average_precision(
    probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None,
    depth: np.ndarray | None = None,
) -> dict[str, float]:
    """Mean per-sample AP (``"sample_ap"``) and, with ``depth``, ``"sample_ap@d{d}"``."""
    per_sample = sample_average_precision(probs, targets, mask, depth)
    out = {"sample_ap": _nanmean(per_sample[:, -1])}
    if depth is not None:
        out.update({f"sample_ap@d{d + 1}": _nanmean(per_sample[:, d]) for d in range(per_sample.shape[1])})
    return out


def thresholded_average_precision(
    probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None, threshold: float = 0.5
) -> dict[str, float]:
    """Micro and macro AP of the 0/1 predictions ``probs > threshold`` (the reference's variant)."""
    probs, targets, mask = check_metric_inputs(probs, targets, mask)
    pred = probs > threshold
    pos, neg = targets & mask, ~targets & mask
    tp, fp = (pred & pos).sum(0), (pred & neg).sum(0)
    num_pos, num_neg = pos.sum(0), neg.sum(0)
    micro = thresholded_ap_from_counts(tp.sum(), fp.sum(), num_pos.sum(), num_neg.sum())
    per_node = thresholded_ap_from_counts(tp, fp, num_pos, num_neg)
    per_node = np.where(num_neg > 0, per_node, np.nan)
    return {"ap_micro_thresholded": float(micro), "ap_macro_thresholded": _nanmean(per_node)}


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")
