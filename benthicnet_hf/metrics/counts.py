"""Confusion counts of the thresholded predictions, per node and per (head, depth) group and row.

One ``uint8`` **state** per bit carries everything the thresholded metrics need: bit 0 = known,
bit 1 = known positive, bit 2 = known and predicted (``probs >= threshold``). Transposed to
``(nodes, rows)`` and ordered by group, every count is a contiguous reduction over node rows
(vectorised over samples), never a Python loop over samples or nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hierarchy import Hierarchy


@dataclass(frozen=True)
class GroupLayout:
    """Nodes grouped by (head, depth), groups ordered by head then depth.

    Attributes:
        order: ``(nodes,)`` node indices, group after group (stable inside a group).
        bounds: ``(groups + 1,)`` offsets of each group in ``order``.
        head: ``(groups,)`` head index of each group; depth: ``(groups,)`` its depth (1 = root).
    """

    order: np.ndarray
    bounds: np.ndarray
    head: np.ndarray
    depth: np.ndarray

    @classmethod
    def of(cls, hierarchy: Hierarchy) -> "GroupLayout":
        depth = np.asarray(hierarchy.depth, dtype=np.int64)
        group_id = np.asarray(hierarchy.head_of_node, dtype=np.int64) * (int(depth.max()) + 1) + depth
        ids, sizes = np.unique(group_id, return_counts=True)
        order = np.argsort(group_id, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        return cls(order, bounds, ids // (int(depth.max()) + 1), ids % (int(depth.max()) + 1))

    def cols(self, g: int) -> np.ndarray:
        """Global node indices of group ``g`` (ascending)."""
        return self.order[self.bounds[g]:self.bounds[g + 1]]


@dataclass(frozen=True)
class ConfusionCounts:
    """Counts over known bits at one threshold.

    Attributes:
        node_tp, node_fp, node_pos, node_known: ``(nodes,)`` per-node counts over samples.
        node_fp_in_group_rows: ``(nodes,)`` false positives counted only in samples that have a
            known positive in the node's (head, depth) group (the paper's singular F1).
        group_tp, group_fp, group_pos, group_known: ``(groups, rows)`` per-sample counts.
    """

    node_tp: np.ndarray
    node_fp: np.ndarray
    node_pos: np.ndarray
    node_known: np.ndarray
    node_fp_in_group_rows: np.ndarray
    group_tp: np.ndarray
    group_fp: np.ndarray
    group_pos: np.ndarray
    group_known: np.ndarray


def bit_states(pred: np.ndarray, positive: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``(rows, nodes)`` uint8 state (see module doc) from ``(rows, nodes)`` bool arrays."""
    state = np.left_shift((pred & known).view(np.uint8), 2)
    state |= np.left_shift(positive.view(np.uint8), 1)
    state |= known.view(np.uint8)
    return state


def confusion_counts_by_group(state_t: np.ndarray, layout: GroupLayout) -> ConfusionCounts:
    """All counts from the transposed ``(nodes, rows)`` states (see :func:`bit_states`)."""
    nodes, rows = state_t.shape
    s = np.take(state_t, layout.order, axis=0)  # group after group, contiguous node rows
    pos_bit = np.right_shift(s, 1)
    pred_bit = np.right_shift(s, 2)
    known = s & 1
    pos = pos_bit & 1
    tp = pos_bit & pred_bit  # pred bit is the top bit: no mask needed
    fp = pred_bit & ~pos_bit & 1
    del s, pos_bit, pred_bit
    num_groups = layout.bounds.size - 1
    group = {name: np.zeros((num_groups, rows), dtype=np.int32) for name in ("tp", "fp", "pos", "known")}
    fp_in_rows = np.zeros(nodes, dtype=np.int64)
    for g in range(num_groups):
        a, b = int(layout.bounds[g]), int(layout.bounds[g + 1])
        acc = np.uint8 if b - a < 256 else np.int32
        for name, values in (("tp", tp), ("fp", fp), ("pos", pos), ("known", known)):
            group[name][g] = np.add.reduce(values[a:b], axis=0, dtype=acc)
        has_pos = (group["pos"][g] > 0).view(np.uint8)
        fp_in_rows[a:b] = np.add.reduce(fp[a:b] & has_pos, axis=1, dtype=np.int64)

    def per_node(values: np.ndarray) -> np.ndarray:
        out = np.empty(nodes, dtype=np.int64)
        out[layout.order] = np.add.reduce(values, axis=1, dtype=np.int64)
        return out

    fp_node = np.empty(nodes, dtype=np.int64)
    fp_node[layout.order] = fp_in_rows
    return ConfusionCounts(
        node_tp=per_node(tp), node_fp=per_node(fp), node_pos=per_node(pos), node_known=per_node(known),
        node_fp_in_group_rows=fp_node, group_tp=group["tp"], group_fp=group["fp"],
        group_pos=group["pos"], group_known=group["known"],
    )
