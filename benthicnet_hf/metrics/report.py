"""All metrics of a hierarchy at once, per head and overall, plus the label-prior baseline.

:func:`compute_metrics` returns a flat ``{"scope/metric": value}`` dict (easy to log with
accelerate trackers and to pick a best-model metric from), where ``scope`` is ``"overall"`` or a
head name. Metric names:

=====================================  =======================================================
``hml_ap`` / ``hml_f1`` (+ ``@d{d}``)  **the BenthicNet paper's** HML AP and bit F1 per head
                                       (:mod:`.paper`); ``overall/``: mean over evaluable heads
``singular_precision/recall/f1``       the paper's singular figures per head (:mod:`.paper`),
(+ ``_macro_depth``, ``f1@d{d}``)      ``overall/``: mean over evaluable heads
``ap_micro`` / ``ap_macro``            AP over known bits on the probabilities (macro: nodes
                                       with a known positive and a known negative;
                                       ``ap_macro_nodes`` counts them)
``ap_*_thresholded``                   AP of the 0/1 predictions
``sample_ap`` / ``sample_ap@d{d}``     mean per-sample AP over the sample's known nodes (of
                                       depth <= d; per head), samples with both known classes
``precision/recall/f1_micro``,         at ``threshold``, over known bits (macro: nodes with
``..._macro``                          both known classes)
``bit_f1``                             per-sample mean of positive-bit and negative-bit F1
``exact_match`` / ``@d{d}``            all known bits (at depth d) right
``level{d}/...``                       per-depth micro/macro P/R/F1 (ETHEC-style)
``accuracy`` (one-hot heads)           top-1 accuracy where every labelled row has one positive
``top1_macro_f1`` (one-hot heads)      sklearn's multiclass macro F1 of the arg-max decisions
``num_samples``                        samples with at least one known bit in the scope
``not_evaluable`` (heads)              1.0 when the head has no known positive or no known
                                       negative bit: all its figures are then NaN
``num_heads`` (overall)                evaluable heads that ``overall/*`` covers
=====================================  =======================================================

**Nothing is trivially maxed**: a node, sample or head without both a known positive and a known
negative is NaN (never 1.0); a non-evaluable head is left out of ``overall/*`` (its columns are
masked before the overall figures) and ``reasons`` says why. Thresholded metrics predict
``probs > threshold`` (strict, the paper's ``sigmoid(.) > 0.5``).

Inputs are ``(rows, nodes)`` numpy arrays over the hierarchy's global layout: coherent
probabilities, targets and mask (1 = known). Multi-process evaluation gathers first (the training
script uses ``accelerator.gather_for_metrics``) and calls this once: every figure is exact at
dataset level.

Speed (BenthicNet size, 188,688 x 330): row-local work (int32 ranking keys, thresholded counts,
positions of positives, per-sample AP overall and by depth) runs over row chunks that stay in
cache; each chunk's known keys not below the lowest known positive (lower ones never count) are
appended column after column, then sorted once per column (per-node AP; torch's single-threaded
integer radix sort for long columns) and merged per head and overall (micro AP, timsort). Large temporaries are avoided or kept small (fresh memory pages cost ~3 ms
per MB on the project's VM). ``timings=`` reports CPU seconds per family.
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
from .inputs import (
    check_metric_inputs, has_float32_scores, min_positive_key, ranking_keys, score_codes, transpose_blocked,
)
from .paper import PositivePositions, head_order, hml_scores, positive_positions, singular_scores
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
from .single_label import accuracy, top1_macro_f1

__all__ = ["HEADLINE", "compute_metrics", "format_metrics_table", "head_evaluability", "prior_probabilities"]

HEADLINE = (
    "hml_ap", "hml_f1", "singular_f1", "ap_micro", "ap_macro", "ap_micro_thresholded",
    "ap_macro_thresholded", "sample_ap", "f1_micro", "f1_macro", "precision_micro", "recall_micro",
    "bit_f1", "exact_match", "accuracy", "top1_macro_f1", "num_samples", "num_heads", "not_evaluable",
)
PAPER_OVERALL = ("hml_ap", "hml_f1", "singular_precision", "singular_recall", "singular_f1")


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


def head_evaluability(targets: np.ndarray, mask: np.ndarray, hierarchy: Hierarchy) -> dict[str, str]:
    """``{head: reason}`` for each head without a known positive or a known negative bit.

    ``targets``/``mask``: ``(rows, num_nodes)`` bool. Evaluable heads are absent from the result.
    """
    num_known = np.add.reduce(mask, axis=0, dtype=np.int64)
    num_pos = np.zeros(targets.shape[1], dtype=np.int64)
    for a in range(0, targets.shape[0], 4096):  # row blocks: no 62 MB temporary (fresh pages are slow)
        num_pos += np.add.reduce(targets[a:a + 4096] & mask[a:a + 4096], axis=0, dtype=np.int64)
    reasons = {}
    for i, head in enumerate(hierarchy.heads):
        s = hierarchy.head_slice(i)
        known, pos = int(num_known[s].sum()), int(num_pos[s].sum())
        missing = [what for what, count in (("positive", pos), ("negative", known - pos)) if count == 0]
        if missing:
            reasons[head.name] = (f"no known {' and no known '.join(missing)} bits ({known} known bits in "
                                  f"{targets.shape[0]} rows): its metrics would be undefined or trivially 1")
    return reasons


def compute_metrics(
    probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None, hierarchy: Hierarchy,
    threshold: float = 0.5, timings: dict[str, float] | None = None, chunk_rows: int | None = None,
    reasons: dict[str, str] | None = None,
) -> dict[str, float]:
    """Every metric, per head and overall, as ``{"scope/metric": float}`` (see module doc).

    Args:
        probs: ``(rows, hierarchy.num_nodes)`` coherent probabilities in [0, 1].
        targets: ``(rows, num_nodes)`` {0, 1}.
        mask: ``(rows, num_nodes)`` {0, 1}, 1 = known; None = all known.
        threshold: predicted = ``probs > threshold`` for the thresholded metrics.
        timings: if given, filled with process CPU seconds per metric family.
        chunk_rows: rows per chunk of the row-local work (default: about 1M bits per chunk);
            the figures do not depend on it.
        reasons: if given, filled with ``{head: why it is not evaluable}`` (the returned dict
            stays floats: ``{head}/not_evaluable`` is 1.0 for those heads).
    """
    clock = _Stopwatch(timings)
    probs, targets, mask = check_metric_inputs(probs, targets, mask)
    if probs.shape[1] != hierarchy.num_nodes:
        raise ValueError(
            f"probs has {probs.shape[1]} columns but the hierarchy has {hierarchy.num_nodes} nodes "
            f"(heads {hierarchy.head_names})"
        )
    not_evaluable = head_evaluability(targets, mask, hierarchy)
    if reasons is not None:
        reasons.update(not_evaluable)
    if not_evaluable:  # masked out: overall figures cover evaluable heads only
        mask = mask.copy()
        for name in not_evaluable:
            mask[:, hierarchy.head_slice(name)] = False
    rows = probs.shape[0]
    chunk_rows = max(1, chunk_rows or (1 << 20) // max(1, probs.shape[1]))
    depth = np.asarray(hierarchy.depth, dtype=np.int64)
    slices = [hierarchy.head_slice(i) for i in range(len(hierarchy.heads))]
    layout = GroupLayout.of(hierarchy)
    head_of = np.asarray(hierarchy.head_of_node)
    groups_of_head = [np.flatnonzero(layout.head == h) for h in range(len(slices))]
    orders = [head_order(layout, h) for h in range(len(slices))]
    level_cols = [[layout.cols(g) - s.start for g in groups_of_head[h]] for h, s in enumerate(slices)]
    level_of_node = np.empty(probs.shape[1], dtype=np.int64)  # index of the node's group in its head
    for g in range(layout.head.size):  # groups (a few per head), not nodes
        level_of_node[layout.cols(g)] = g - groups_of_head[layout.head[g]][0]
    num_known = np.add.reduce(mask, axis=0, dtype=np.int64)
    dense_codes = None if has_float32_scores(probs) else score_codes(probs)  # one global ranking
    # Items below every positive never count in an AP: dropped before the column sorts and merges.
    column_keys = ColumnKeys(num_known, min_positive_key(probs, targets, mask, dense_codes))
    node = {name: np.zeros(probs.shape[1], dtype=np.int64) for name in ("tp", "fp", "pos", "fp_rows")}
    # per (group, row) counts are at most the group's width: int16 halves these 4 arrays' pages
    g_dtype = np.int16 if int(np.diff(layout.bounds).max(initial=0)) < 32767 else np.int32
    g_tp, g_fp, g_pos, g_known = (np.zeros((layout.head.size, rows), dtype=g_dtype) for _ in range(4))
    overall_sample_ap = np.empty(rows)
    head_sample_ap = [np.empty((rows, len(g))) for g in groups_of_head]
    positions: list[list[PositivePositions]] = [[] for _ in slices]
    clock.lap("inputs")

    # Row chunks keep every row-local temporary in cache; columns are gathered for later.
    for start in range(0, rows, chunk_rows):
        sl = slice(start, min(start + chunk_rows, rows))
        positive, known = targets[sl] & mask[sl], mask[sl]
        codes = None if dense_codes is None else dense_codes[sl].copy()
        keys = ranking_keys(probs[sl], positive, known, codes)
        state_t = transpose_blocked(bit_states(probs[sl] > threshold, positive, known))
        clock.lap("inputs")
        cc = confusion_counts_by_group(state_t, layout)
        for name, value in (("tp", cc.node_tp), ("fp", cc.node_fp), ("pos", cc.node_pos),
                            ("fp_rows", cc.node_fp_in_group_rows)):
            node[name] += value
        g_tp[:, sl], g_fp[:, sl], g_pos[:, sl], g_known[:, sl] = (
            cc.group_tp, cc.group_fp, cc.group_pos, cc.group_known)
        clock.lap("threshold_counts")
        for h, order in enumerate(orders):
            positions[h].append(positive_positions(positive, known, order, depth, start))
        clock.lap("paper_positions")
        column_keys.add(keys)
        clock.lap("node_ap")
        row, n, tp_rank = rank_in_rows(keys, cc.group_known.sum(axis=0))
        overall_sample_ap[sl] = mean_per_segment(row, tp_rank / n, np.bincount(row, minlength=keys.shape[0]))
        clock.lap("sample_ap_overall")
        p_head, p_row, p_col, p_key = sorted_positives(keys, positive, head_of)
        p_bounds = np.searchsorted(p_head, np.arange(len(slices) + 1))
        for h, s in enumerate(slices):
            at = slice(p_bounds[h], p_bounds[h + 1])
            counts = counts_at_positives_by_group(keys[:, s], level_cols[h], p_row[at], p_key[at])
            head_sample_ap[h][sl] = ap_by_depth(
                counts, p_row[at], p_key[at], level_of_node[p_col[at]], keys.shape[0])
        clock.lap("sample_ap_by_depth")

    # A sample without a known negative in the scope would score 1 whatever the scores.
    has_neg = g_known.sum(axis=0) > g_pos.sum(axis=0)
    overall_sample_ap[~has_neg] = np.nan
    for h, groups in enumerate(groups_of_head):
        a, b = int(groups[0]), int(groups[-1]) + 1
        has_neg = np.cumsum(g_known[a:b], axis=0) > np.cumsum(g_pos[a:b], axis=0)  # (levels, rows)
        head_sample_ap[h][~has_neg.T] = np.nan

    # Thresholded counts per node.
    tp, fp, num_pos = node["tp"], node["fp"], node["pos"]
    fn, num_neg = num_pos - tp, num_known - num_pos
    node_thr_ap = np.where(num_neg > 0, thresholded_ap_from_counts(tp, fp, num_pos, num_neg), np.nan)
    clock.lap("threshold_counts")

    # Ranking metrics over samples: per node and micro (one sort per column, one per head).
    col, n, tp_rank, ranked = rank_in_columns(column_keys, num_pos)
    node_ap = node_ap_from_ranks(col, n, tp_rank, num_pos, num_known)
    clock.lap("node_ap")
    kept = column_keys.count  # per column: the keys left after the floor
    ends = np.cumsum(kept)
    bounds = [(int(ends[s.start] - kept[s.start]), int(ends[s.stop - 1])) for s in slices]
    micro_all, micro_heads = grouped_micro_ap(ranked, bounds)
    del ranked, column_keys
    clock.lap("micro_ap")

    out: dict[str, float] = {}

    def ranking(scope: str, cols: slice, micro: float, sample_ap: np.ndarray) -> None:
        out[f"{scope}/ap_micro"] = micro
        out[f"{scope}/ap_macro"] = _nanmean(node_ap[cols])
        out[f"{scope}/ap_macro_nodes"] = float(np.isfinite(node_ap[cols]).sum())
        out[f"{scope}/ap_micro_thresholded"] = float(thresholded_ap_from_counts(
            tp[cols].sum(), fp[cols].sum(), num_pos[cols].sum(), num_neg[cols].sum()))
        out[f"{scope}/ap_macro_thresholded"] = _nanmean(node_thr_ap[cols])
        out[f"{scope}/sample_ap"] = _nanmean(sample_ap)

    g_wrong = g_fp + g_pos - g_tp  # (groups, rows) known bits predicted wrong

    def share_right(known: np.ndarray, wrong: np.ndarray) -> float:
        """Fraction of samples with a known bit that have no wrong bit (NaN if none)."""
        valid = int(np.count_nonzero(known))
        return int(np.count_nonzero((known > 0) & (wrong == 0))) / valid if valid else float("nan")

    def thresholded(scope: str, cols: slice, in_scope: slice) -> None:
        """``in_scope``: the scope's groups (contiguous: groups are ordered by head)."""
        known = g_known[in_scope].sum(axis=0)
        out[f"{scope}/num_samples"] = float(np.count_nonzero(known))
        for key, value in _scores_from_counts(tp[cols], fp[cols], fn[cols], num_neg[cols]).items():
            out[f"{scope}/{key}"] = value
        r_tp, r_fp = g_tp[in_scope].sum(axis=0), g_fp[in_scope].sum(axis=0)
        r_pos = g_pos[in_scope].sum(axis=0)
        r_fn = r_pos - r_tp
        r_tn = known - r_tp - r_fp - r_fn
        f1_pos = _ratio(2 * r_tp, 2 * r_tp + r_fp + r_fn, empty=1.0)
        f1_neg = _ratio(2 * r_tn, 2 * r_tn + r_fn + r_fp, empty=1.0)
        both = (r_pos > 0) & (known > r_pos)
        out[f"{scope}/bit_f1"] = _nanmean(np.where(both, (f1_pos + f1_neg) / 2, np.nan))
        out[f"{scope}/exact_match"] = share_right(known, r_fp + r_fn)
        depth_cols = depth[cols]
        groups = np.arange(layout.head.size)[in_scope]
        for d in range(1, int(depth_cols.max()) + 1):
            sel = groups[layout.depth[groups] == d]
            out[f"{scope}/exact_match@d{d}"] = share_right(g_known[sel].sum(axis=0), g_wrong[sel].sum(axis=0))
            at = np.flatnonzero(depth_cols == d) + (cols.start or 0)
            if at.size:
                for key, value in _scores_from_counts(tp[at], fp[at], fn[at], num_neg[at]).items():
                    out[f"{scope}/level{d}/{key}"] = value

    ranking("overall", slice(None), micro_all, overall_sample_ap)
    thresholded("overall", slice(None), slice(0, layout.head.size))
    for h, (head, cols, micro) in enumerate(zip(hierarchy.heads, slices, micro_heads)):
        name = head.name
        sample_ap = head_sample_ap[h]
        ranking(name, cols, micro, sample_ap[:, -1])
        for level, g in enumerate(groups_of_head[h]):
            out[f"{name}/sample_ap@d{layout.depth[g]}"] = _nanmean(sample_ap[:, level])
        in_head = slice(int(groups_of_head[h][0]), int(groups_of_head[h][-1]) + 1)
        thresholded(name, cols, in_head)
        clock.lap("assemble")
        nodes_up_to = np.cumsum(np.diff(layout.bounds)[in_head])
        paper = hml_scores(g_tp[in_head], g_fp[in_head], g_pos[in_head], g_known[in_head],
                           layout.depth[in_head], PositivePositions.concatenate(positions[h]), nodes_up_to)
        paper.update(singular_scores(tp[cols], node["fp_rows"][cols], fn[cols], depth[cols]))
        out.update({f"{name}/{k}": v for k, v in paper.items()})
        clock.lap("paper_scores")
        head_pos, head_known = g_pos[in_head].sum(axis=0), g_known[in_head].sum(axis=0)
        labelled = head_known > 0
        if labelled.any() and (head_pos[labelled] == 1).all():  # one-hot head
            out[f"{name}/accuracy"] = accuracy(probs[:, cols], targets[:, cols], mask[:, cols])
            out[f"{name}/top1_macro_f1"] = top1_macro_f1(probs[:, cols], targets[:, cols], mask[:, cols])
        if name in not_evaluable:
            out.update({k: float("nan") for k in out if k.startswith(f"{name}/")})
        out[f"{name}/not_evaluable"] = float(name in not_evaluable)
    evaluable = [h.name for h in hierarchy.heads if h.name not in not_evaluable]
    out["overall/num_heads"] = float(len(evaluable))
    for key in PAPER_OVERALL:  # the paper reports per head; overall = plain mean over evaluable heads
        out[f"overall/{key}"] = _nanmean([out[f"{h}/{key}"] for h in evaluable]) if evaluable else float("nan")
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
        if key.endswith(("num_samples", "_nodes", "num_heads", "not_evaluable")):
            return f"{value:.0f}"
        return f"{value:.{digits}f}"

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
