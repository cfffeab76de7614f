"""Average precision over the known bits: micro, per node (macro) and per sample (HML AP).

All functions are exact dataset-level figures equal to ``sklearn.metrics.average_precision_score``
on the same masked arrays, ties included: a positive scored ``s`` contributes the precision over
all known bits scored ``>= s``:

    AP = (1 / P) * sum over known positives i of  tp(>= s_i) / n(>= s_i)

Shapes: ``probs``, ``targets``, ``mask`` are ``(rows, nodes)``; mask 1 = known.

- **micro AP**: one ranking of every known (sample, node) bit.
- **per-node AP / macro AP**: one ranking per node; the macro figure averages the nodes that have
  at least one known positive *and* one known negative (elsewhere AP is undefined or trivially 1).
- **per-sample AP (HML AP)**: one ranking per sample over that sample's known nodes, for samples
  with at least one known positive; optionally restricted to nodes of depth <= d for every d.
- **thresholded AP**: the reference's test-time variant (BenthicNet ``test_depth.ipynb``): AP of the
  0/1 predictions ``probs >= threshold``. Reported separately: it is a different quantity.
"""

from __future__ import annotations

import numpy as np

from .inputs import (
    CODE_BITS,
    check_metric_inputs,
    count_items_at_least,
    rank_positives_in_rows,
    score_codes,
)

_CODE_MASK = (1 << CODE_BITS) - 1


# ---------------------------------------------------------------- on precomputed codes (internal)
def micro_ap_from_codes(codes: np.ndarray, positive: np.ndarray, known: np.ndarray) -> float:
    """Micro AP from ``score_codes`` output; NaN without a known positive."""
    return float(grouped_micro_ap_from_codes(codes, positive, known, [slice(None)])[1][0])


def grouped_micro_ap_from_codes(
    codes: np.ndarray, positive: np.ndarray, known: np.ndarray, groups: list[slice]
) -> tuple[float, list[float]]:
    """Micro AP of the union of column ``groups`` (e.g. heads) and of each group alone.

    Each group's known codes are sorted once; every positive of every group is then counted
    against each group with one ``searchsorted`` (sorted queries), so the union needs no extra sort.
    """
    pos_codes = [np.sort(codes[:, g][positive[:, g]]) for g in groups]
    all_pos = np.sort(np.concatenate(pos_codes))
    n_all = np.zeros(all_pos.size, dtype=np.int64)
    per_group = []
    for g, own in zip(groups, pos_codes):
        ranked = np.sort(codes[:, g][known[:, g]])
        n_all += ranked.size - np.searchsorted(ranked, all_pos, side="left")
        n_own = ranked.size - np.searchsorted(ranked, own, side="left")
        tp_own = own.size - np.searchsorted(own, own, side="left")
        per_group.append(float(np.mean(tp_own / n_own)) if own.size else float("nan"))
    tp_all = all_pos.size - np.searchsorted(all_pos, all_pos, side="left")
    overall = float(np.mean(tp_all / n_all)) if all_pos.size else float("nan")
    return overall, per_group


def node_ap_from_codes(codes: np.ndarray, positive: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``(nodes,)`` AP of each node's column; NaN without both a known positive and negative."""
    nodes = codes.shape[1]
    node, n, tp = rank_positives_in_rows(
        np.ascontiguousarray(codes.T), np.ascontiguousarray(positive.T), np.ascontiguousarray(known.T)
    )
    num_pos = np.bincount(node, minlength=nodes)
    ap = np.bincount(node, weights=tp / n, minlength=nodes) / np.maximum(num_pos, 1)
    num_neg = known.sum(axis=0) - num_pos
    return np.where((num_pos > 0) & (num_neg > 0), ap, np.nan)


def sample_ap_from_codes(
    codes: np.ndarray, positive: np.ndarray, known: np.ndarray, depth: np.ndarray | None = None
) -> np.ndarray:
    """``(rows, max_depth)`` per-sample AP over known nodes of depth <= d (column d - 1).

    ``depth=None`` ranks all nodes together and returns ``(rows, 1)``. NaN where the sample has
    no known positive of depth <= d.
    """
    rows, nodes = codes.shape
    if depth is None:
        row, n, tp = rank_positives_in_rows(codes, positive, known)
        num = np.bincount(row, minlength=rows)
        total = np.bincount(row, weights=tp / n, minlength=rows)
        return np.where(num > 0, total / np.maximum(num, 1), np.nan)[:, None]
    depth = np.asarray(depth, dtype=np.int64)
    if depth.shape != (nodes,) or (depth < 1).any():
        raise ValueError(f"depth must be ({nodes},) positive integers, got shape {depth.shape}")
    max_depth = int(depth.max())
    level_bits = max(1, int(max_depth - 1).bit_length())
    # Positives sorted by (row, code) with their level in the lowest bits.
    row, col = np.nonzero(positive)
    keys = np.sort(
        (((row.astype(np.int64) << CODE_BITS) + codes[row, col]) << level_bits) + (depth[col] - 1)
    )
    level = keys & ((1 << level_bits) - 1)
    keys >>= level_bits
    row, code = keys >> CODE_BITS, (keys & _CODE_MASK).astype(np.int32)
    # n(>= s) per level: the positives are ranked inside each level's row block.
    known_codes = np.where(known, codes, 0)
    n_by_level = np.zeros((keys.size, max_depth), dtype=np.int64)
    for d in range(max_depth):  # a handful of levels, each vectorised over all samples
        cols = np.flatnonzero(depth == d + 1)
        if cols.size:
            n_by_level[:, d] = count_items_at_least(known_codes[:, cols], code, row)
    # tp(>= s) per level: positives of the same row from the first of s's ties on.
    onehot = np.zeros((keys.size + 1, max_depth), dtype=np.int64)
    onehot[np.arange(keys.size), level] = 1
    suffix = np.cumsum(onehot[::-1], axis=0)[::-1]  # suffix[i] = sum over k >= i
    new_tie = np.ones(keys.size, dtype=bool)
    new_tie[1:] = keys[1:] != keys[:-1]
    first_tie = np.maximum.accumulate(np.where(new_tie, np.arange(keys.size), 0))
    row_end = np.cumsum(np.bincount(row, minlength=rows))[row]
    tp = np.cumsum(suffix[first_tie] - suffix[row_end], axis=1)
    n = np.cumsum(n_by_level, axis=1)
    counted = level[:, None] <= np.arange(max_depth)[None, :]  # (positives, depth)
    precision = np.where(counted, tp / np.maximum(n, 1), 0.0)
    out = np.full((rows, max_depth), np.nan)
    for d in range(max_depth):
        num = np.bincount(row, weights=counted[:, d], minlength=rows)
        total = np.bincount(row, weights=precision[:, d], minlength=rows)
        out[:, d] = np.where(num > 0, total / np.maximum(num, 1), np.nan)
    return out


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


# ------------------------------------------------------------------------------- public API
def micro_average_precision(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None) -> float:
    """AP of all known bits ranked together (``probs``/``targets``/``mask`` ``(rows, nodes)``)."""
    probs, targets, mask = check_metric_inputs(probs, targets, mask)
    return micro_ap_from_codes(score_codes(probs), targets & mask, mask)


def node_average_precision(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``(nodes,)`` AP per node over its known samples; NaN where undefined (see module doc)."""
    probs, targets, mask = check_metric_inputs(probs, targets, mask)
    return node_ap_from_codes(score_codes(probs), targets & mask, mask)


def macro_average_precision(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean per-node AP over nodes with >= 1 known positive and >= 1 known negative."""
    ap = node_average_precision(probs, targets, mask)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


def sample_average_precision(
    probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None,
    depth: np.ndarray | None = None,
) -> np.ndarray:
    """``(rows, max_depth)`` per-sample AP over known nodes of depth <= d; see the module doc."""
    probs, targets, mask = check_metric_inputs(probs, targets, mask)
    return sample_ap_from_codes(score_codes(probs), targets & mask, mask, depth)


def hml_average_precision(
    probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None,
    depth: np.ndarray | None = None,
) -> dict[str, float]:
    """HML AP: mean per-sample AP (``"hml_ap"``) and, with ``depth``, ``"hml_ap@d{d}"``."""
    per_sample = sample_average_precision(probs, targets, mask, depth)
    out = {"hml_ap": _nanmean(per_sample[:, -1])}
    if depth is not None:
        out.update({f"hml_ap@d{d + 1}": _nanmean(per_sample[:, d]) for d in range(per_sample.shape[1])})
    return out


def thresholded_average_precision(
    probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None, threshold: float = 0.5
) -> dict[str, float]:
    """Micro and macro AP of the 0/1 predictions ``probs >= threshold`` (the reference's variant)."""
    probs, targets, mask = check_metric_inputs(probs, targets, mask)
    pred = probs >= threshold
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
