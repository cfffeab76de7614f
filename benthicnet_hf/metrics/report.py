"""All metrics of a hierarchy at once, per head and overall, plus the label-prior baseline.

:func:`compute_metrics` returns a flat ``{"scope/metric": value}`` dict (easy to log with
accelerate trackers and to pick a best-model metric from), where ``scope`` is ``"overall"`` or a
head name. Metric names:

===============================  =============================================================
``ap_micro`` / ``ap_macro``      AP over known bits on the probabilities (macro: nodes with a
                                 known positive and a known negative; ``ap_macro_nodes`` counts
                                 them)
``ap_*_thresholded``             AP of the 0/1 predictions (the reference's test-time variant)
``hml_ap`` / ``hml_ap@d{d}``     mean per-sample AP over the sample's known nodes (of depth <= d;
                                 the per-depth figures are per head)
``precision/recall/f1_micro``,   at ``threshold``, over known bits
``..._macro``
``bit_f1``                       per-sample mean of positive-bit and negative-bit F1
``exact_match`` / ``@d{d}``      all known bits (at depth d) right
``level{d}/...``                 per-depth micro/macro P/R/F1 (ETHEC-style)
``singular_f1`` (heads)          the BenthicNet paper's singular F1 (see ``single_label``)
``accuracy`` (one-hot heads)     top-1 accuracy where every labelled row has one positive
``num_samples``                  samples with at least one known bit in the scope
===============================  =============================================================

Inputs are ``(rows, nodes)`` numpy arrays over the hierarchy's global layout: coherent
probabilities, targets and mask (1 = known). Multi-process evaluation gathers first (the training
script uses ``accelerator.gather_for_metrics``) and calls this once: every figure is exact at
dataset level.
"""

from __future__ import annotations

import math
import time
from typing import Mapping

import numpy as np

from ..hierarchy import Hierarchy
from .average_precision import node_ap_from_ranks, thresholded_ap_from_counts
from .counts import GroupLayout, bit_states, confusion_counts_by_group
from .f1 import _ratio, _scores_from_counts
from .inputs import check_metric_inputs, ranking_keys, transpose_blocked
from .ranking import (
    ap_by_depth,
    counts_at_positives_by_group,
    grouped_micro_ap,
    mean_per_segment,
    rank_in_columns,
    rank_in_rows,
    sorted_positives,
)
from .single_label import accuracy, singular_f1_from_counts

HEADLINE = (
    "ap_micro", "ap_macro", "ap_micro_thresholded", "ap_macro_thresholded", "hml_ap",
    "f1_micro", "f1_macro", "precision_micro", "recall_micro", "bit_f1", "exact_match",
    "singular_f1", "accuracy", "num_samples",
)


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


class _Stopwatch:
    """Process CPU seconds per stage into ``timings`` (no-op when None)."""

    def __init__(self, timings: dict[str, float] | None):
        self.timings, self.last = timings, time.process_time()

    def lap(self, name: str) -> None:
        if self.timings is not None:
            now = time.process_time()
            self.timings[name] = self.timings.get(name, 0.0) + now - self.last
            self.last = now


def compute_metrics(
    probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None, hierarchy: Hierarchy,
    threshold: float = 0.5, timings: dict[str, float] | None = None,
) -> dict[str, float]:
    """Every metric, per head and overall, as ``{"scope/metric": float}`` (see module doc).

    Args:
        probs: ``(rows, hierarchy.num_nodes)`` coherent probabilities in [0, 1].
        targets: ``(rows, num_nodes)`` {0, 1}.
        mask: ``(rows, num_nodes)`` {0, 1}, 1 = known; None = all known.
        threshold: decision threshold for the thresholded metrics.
        timings: if given, filled with process CPU seconds per metric family.
    """
    clock = _Stopwatch(timings)
    probs, targets, mask = check_metric_inputs(probs, targets, mask)
    if probs.shape[1] != hierarchy.num_nodes:
        raise ValueError(
            f"probs has {probs.shape[1]} columns but the hierarchy has {hierarchy.num_nodes} nodes "
            f"(heads {hierarchy.head_names})"
        )
    rows = probs.shape[0]
    depth = np.asarray(hierarchy.depth, dtype=np.int64)
    slices = [hierarchy.head_slice(i) for i in range(len(hierarchy.heads))]
    positive = targets & mask
    keys = ranking_keys(probs, positive, mask)
    state_t = transpose_blocked(bit_states(probs >= threshold, positive, mask))
    clock.lap("inputs")

    # Thresholded counts: per node, and per (row, head, depth) group.
    layout = GroupLayout.of(hierarchy)
    cc = confusion_counts_by_group(state_t, layout)
    tp, fp, num_pos, num_known = cc.node_tp, cc.node_fp, cc.node_pos, cc.node_known
    fn, num_neg = num_pos - tp, num_known - num_pos
    g_tp, g_fp, g_pos, g_known = cc.group_tp, cc.group_fp, cc.group_pos, cc.group_known
    node_thr_ap = np.where(num_neg > 0, thresholded_ap_from_counts(tp, fp, num_pos, num_neg), np.nan)
    clock.lap("threshold_counts")

    # Ranking metrics: per node and micro (one sort per column, one per head).
    keys_t = transpose_blocked(keys)
    col, n, tp_rank, ranked = rank_in_columns(keys_t, (state_t & 1).view(bool), num_known, num_pos)
    del keys_t
    node_ap = node_ap_from_ranks(col, n, tp_rank, num_pos, num_known)
    clock.lap("node_ap")
    ends = np.cumsum(num_known)
    bounds = [(int(ends[s.start] - num_known[s.start]), int(ends[s.stop - 1])) for s in slices]
    micro_all, micro_heads = grouped_micro_ap(ranked, bounds)
    del ranked
    clock.lap("micro_ap")

    # Per-sample AP: every node of the row, then each head by depth.
    row, n, tp_rank = rank_in_rows(keys, g_known.sum(axis=0))
    overall_sample_ap = mean_per_segment(row, tp_rank / n, np.bincount(row, minlength=rows))
    clock.lap("sample_ap_overall")
    head_sample_ap = []
    p_head, p_row, p_col, p_key = sorted_positives(keys, positive, np.asarray(hierarchy.head_of_node))
    p_bounds = np.searchsorted(p_head, np.arange(len(slices) + 1))
    for h, s in enumerate(slices):
        groups = np.flatnonzero(layout.head == h)
        level_cols = [layout.cols(g) - s.start for g in groups]
        at = slice(p_bounds[h], p_bounds[h + 1])
        counts = counts_at_positives_by_group(keys[:, s], level_cols, g_known[groups], p_row[at], p_key[at])
        head_sample_ap.append(ap_by_depth(counts, p_row[at], p_key[at], depth[p_col[at]] - 1, rows))
    clock.lap("sample_ap_by_depth")

    out: dict[str, float] = {}

    def ranking(scope: str, cols: slice, micro: float, sample_ap: np.ndarray) -> None:
        out[f"{scope}/ap_micro"] = micro
        out[f"{scope}/ap_macro"] = _nanmean(node_ap[cols])
        out[f"{scope}/ap_macro_nodes"] = float(np.isfinite(node_ap[cols]).sum())
        out[f"{scope}/ap_micro_thresholded"] = float(thresholded_ap_from_counts(
            tp[cols].sum(), fp[cols].sum(), num_pos[cols].sum(), num_neg[cols].sum()))
        out[f"{scope}/ap_macro_thresholded"] = _nanmean(node_thr_ap[cols])
        out[f"{scope}/hml_ap"] = _nanmean(sample_ap)

    def thresholded(scope: str, cols: slice, in_scope: np.ndarray) -> None:
        known = g_known[in_scope].sum(axis=0)
        out[f"{scope}/num_samples"] = float((known > 0).sum())
        for key, value in _scores_from_counts(tp[cols], fp[cols], fn[cols]).items():
            out[f"{scope}/{key}"] = value
        r_tp, r_fp = g_tp[in_scope].sum(axis=0), g_fp[in_scope].sum(axis=0)
        r_fn = g_pos[in_scope].sum(axis=0) - r_tp
        r_tn = known - r_tp - r_fp - r_fn
        f1_pos = _ratio(2 * r_tp, 2 * r_tp + r_fp + r_fn, empty=1.0)
        f1_neg = _ratio(2 * r_tn, 2 * r_tn + r_fn + r_fp, empty=1.0)
        out[f"{scope}/bit_f1"] = _nanmean(np.where(known > 0, (f1_pos + f1_neg) / 2, np.nan))
        wrong = r_fp + r_fn
        out[f"{scope}/exact_match"] = _nanmean(np.where(known > 0, wrong == 0, np.nan))
        depth_cols = depth[cols]
        for d in range(1, int(depth_cols.max()) + 1):
            sel = in_scope & (layout.depth == d)
            k_d = g_known[sel].sum(axis=0)
            w_d = (g_fp[sel] + g_pos[sel] - g_tp[sel]).sum(axis=0)
            out[f"{scope}/exact_match@d{d}"] = _nanmean(np.where(k_d > 0, w_d == 0, np.nan))
            at = np.flatnonzero(depth_cols == d) + (cols.start or 0)
            if at.size:
                for key, value in _scores_from_counts(tp[at], fp[at], fn[at]).items():
                    out[f"{scope}/level{d}/{key}"] = value

    ranking("overall", slice(None), micro_all, overall_sample_ap)
    thresholded("overall", slice(None), np.ones(layout.head.size, dtype=bool))
    for h, (head, cols, micro) in enumerate(zip(hierarchy.heads, slices, micro_heads)):
        name = head.name
        sample_ap = head_sample_ap[h]
        ranking(name, cols, micro, sample_ap[:, -1])
        for d in range(sample_ap.shape[1]):
            out[f"{name}/hml_ap@d{d + 1}"] = _nanmean(sample_ap[:, d])
        in_head = layout.head == h
        thresholded(name, cols, in_head)
        out.update({f"{name}/{k}": v for k, v in singular_f1_from_counts(
            tp[cols], cc.node_fp_in_group_rows[cols], fn[cols], depth[cols]).items()})
        head_pos, head_known = g_pos[in_head].sum(axis=0), g_known[in_head].sum(axis=0)
        labelled = head_known > 0
        if labelled.any() and (head_pos[labelled] == 1).all():  # one-hot head
            out[f"{name}/accuracy"] = accuracy(probs[:, cols], targets[:, cols], mask[:, cols])
    clock.lap("assemble")
    return out


def prior_probabilities(train_targets: np.ndarray, train_mask: np.ndarray | None = None) -> np.ndarray:
    """``(nodes,)`` label prior: fraction of known training bits that are positive (0 if none known).

    The baseline a model must beat: ``compute_metrics(np.broadcast_to(prior, targets.shape), ...)``.
    """
    t = np.asarray(train_targets, dtype=bool)
    m = np.ones_like(t) if train_mask is None else np.asarray(train_mask, dtype=bool)
    if t.shape != m.shape or t.ndim != 2:
        raise ValueError(f"train_targets {t.shape} and train_mask {m.shape} must be the same (rows, nodes)")
    known = m.sum(axis=0)
    return np.where(known > 0, (t & m).sum(axis=0) / np.maximum(known, 1), 0.0)


def _metric_order(name: str) -> tuple[int, str]:
    return (HEADLINE.index(name) if name in HEADLINE else len(HEADLINE), name)


def format_metrics_table(
    metrics: Mapping[str, float], baseline: Mapping[str, float] | None = None, digits: int = 4,
    headline_only: bool = False,
) -> str:
    """A readable table: one row per metric, one column per scope (``overall`` first).

    With ``baseline`` (e.g. the label-prior metrics) each cell reads ``model (baseline)``.
    """
    scopes: list[str] = []
    names: list[str] = []
    for key in metrics:
        scope, _, name = key.partition("/")
        if scope not in scopes:
            scopes.append(scope)
        if name not in names and (not headline_only or name in HEADLINE):
            names.append(name)
    scopes.sort(key=lambda s: s != "overall")
    names.sort(key=_metric_order)

    def number(key: str, value: float | None) -> str:
        if value is None or math.isnan(value):
            return "nan"
        return f"{value:.0f}" if key.endswith(("num_samples", "_nodes")) else f"{value:.{digits}f}"

    def cell(key: str) -> str:
        if key not in metrics:
            return ""
        text = number(key, metrics[key])
        if baseline is not None and key in baseline:
            text += f" ({number(key, baseline[key])})"
        return text

    rows = [["metric", *scopes]] + [[n, *(cell(f"{s}/{n}") for s in scopes)] for n in names]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    if baseline is not None:
        lines.append("(in brackets: the label-prior baseline)")
    return "\n".join(lines)
