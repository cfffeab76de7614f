"""The BenthicNet paper's metrics under the paper's names: HML AP, HML (bit) F1, singular P/R/F1.

Xu et al., "Hierarchical Multi-Label Classification with Missing Information for Benthic Habitat
Imagery", arXiv:2409.06618 (2024). The protocol is the authors' evaluation notebook
``test_depth_group.ipynb`` in ``DalhousieAI/benthicnet_probes`` (the depth-filtering cells and the
"decompose and score labels" cells), re-implemented here from its description (not copied) and
checked against a literal row-by-row re-implementation in ``tests/test_paper_metrics.py``.

Per head, with ``pred = probs > threshold`` (**strict** ``>``, as the notebook's
``sigmoid(MCM(logits)) > 0.5``) and the head's nodes at depth ``D`` (1 = roots; the notebook's
depth ``D - 1``):

- **applicable rows** at depth D: rows with a known positive node at depth exactly D (and a
  known negative among their relevant nodes, see the deviations);
- **relevant nodes** of a row: the head's nodes of depth <= D that are known in that row;
- per applicable row, over its relevant nodes: **AP** = sklearn ``average_precision_score`` of the
  0/1 predictions, in closed form ``(TP/P) * TP/(TP+FP) + (1 - TP/P) * P/n`` (first term 0 when
  nothing is predicted), and **bit F1** = mean over the states {1, 0} of the F1 of that state;
- rows are grouped by the positions of their positives within their relevant-node list; the depth
  score is the plain mean over groups of the mean within each group;
- the head score (``hml_ap``, ``hml_f1``) is the mean of the depth scores weighted by the number
  of applicable rows (``@d{D}``: the depth scores).

**Singular precision / recall / F1** (the "decompose and score labels" cells): at depth D, over the
rows with a known positive at depth D, each known target node at depth D is a true positive if predicted, else a false
negative; each known predicted non-target node at depth D is a false positive. Per node
precision, recall and ``F1 = 2PR / (P + R)`` (0 when a denominator is 0), macro over the nodes
seen (as a target or a false positive); the head figure weights the depths by their number of
target occurrences (``singular_f1``) or not (``singular_f1_macro_depth``).

Deviations from the notebook, each deliberate:

- The notebook gives NaN for the whole head when some row predicts nothing in a state
  (precision 0/0) or when a depth has no applicable row; here such a row-state F1 is 0 (sklearn's
  ``zero_division=0``) and empty depths are skipped.
- An applicable row whose relevant nodes are all positive (no known negative: a single-root head
  at depth 1, or a positives-only source) is not scored, and does not count in the depth weights:
  the notebook gives it AP 1 whatever the predictions. With the authors' masks on CATAMI (several
  roots per head, every other node known) no such row occurs, so the figures are the notebook's.
- Unknown bits carry no label: "positive" always means a *known* positive (the notebook reads
  applicability from the raw targets; with the authors' masks the two agree).
- Node order (it decides which rows share a group, through the positions): level by level from
  the roots, nodes of a level in global index order, i.e. a breadth-first walk from all roots at
  once; the notebook walks root by root in its graph's insertion order. The two orders group
  alike whenever two rows share their relevant-node set; they can differ only where different
  masks happen to give equal position lists. This order keeps a node's position the same at every
  depth, so positions are computed once per head.
- Flat heads have depth 1 only. DAG heads use this library's depth (one more than the deepest
  parent), so "nodes of depth <= D" stays closed under ancestors.
- The notebook keeps a row's "most specific" labels with a substring test on path strings. At
  depth D this can only drop a depth-D node whose path is a substring of another node's path of
  the same depth; no CATAMI path is a substring of a non-ancestor's path (checked in the tests),
  so we use the hierarchy instead of strings.

Everything is vectorised: per-row counts come as ``(depth groups, rows)`` arrays (see
:mod:`.counts`), positions are one cumulative sum per head; loops run over heads and depths only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hierarchy import Hierarchy
from .average_precision import thresholded_ap_from_counts
from .counts import GroupLayout, bit_states, confusion_counts_by_group
from .inputs import check_metric_inputs, transpose_blocked

PAPER_METRICS = ("hml_ap", "hml_f1", "singular_precision", "singular_recall", "singular_f1")


@dataclass
class PositivePositions:
    """Known positives of one head, sorted by (row, position).

    Attributes:
        row: ``(P,)`` row of each positive.
        level: ``(P,)`` its depth (1 = root).
        position: ``(P,)`` its index in the row's list of known head nodes (level-major order).
    """

    row: np.ndarray
    level: np.ndarray
    position: np.ndarray

    @classmethod
    def concatenate(cls, parts: list["PositivePositions"]) -> "PositivePositions":
        if not parts:
            return cls(*(np.zeros(0, dtype=np.int64) for _ in range(3)))
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("row", "level", "position")))


def head_order(layout: GroupLayout, head: int) -> np.ndarray:
    """Global indices of one head's nodes, level by level, global index order within a level."""
    groups = np.flatnonzero(layout.head == head)
    return np.concatenate([layout.cols(int(g)) for g in groups])


def positive_positions(positive: np.ndarray, known: np.ndarray, order: np.ndarray,
                       depth: np.ndarray, row_offset: int = 0) -> PositivePositions:
    """Positions of one head's known positives among each row's known head nodes.

    Args:
        positive, known: ``(rows, nodes)`` bool over the global layout (positive implies known).
        order: ``(head_nodes,)`` the head's global indices in level-major order (:func:`head_order`).
        depth: ``(nodes,)`` depth of every global node.
        row_offset: added to the returned rows (for row chunks).
    """
    known_o = known[:, order]
    # position = known nodes before it in the order; positives are known, so cumsum - 1
    before = np.cumsum(known_o, axis=1, dtype=np.int16 if order.size < 32767 else np.int32)
    r, k = np.nonzero(positive[:, order])  # row-major: sorted by (row, order index)
    # small dtypes: these arrays hold every positive of the dataset (fewer fresh pages)
    return PositivePositions(r + row_offset, depth[order][k].astype(np.int16),
                             before[r, k].astype(np.int32) - 1)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Elementwise ``2 tp / (2 tp + fp + fn)``, 0 where the denominator is 0."""
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)


def row_scores(tp: np.ndarray, fp: np.ndarray, pos: np.ndarray, known: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(ap, bit_f1)`` per row, each ``(rows,)``, from that row's counts over its relevant nodes.

    Args:
        tp, fp: predicted known positives / negatives; pos, known: known positives / known nodes.
        All ``(rows,)`` integers with ``pos >= 1``.
    """
    tp, fp, pos, known = (np.asarray(x, dtype=np.float64) for x in (tp, fp, pos, known))
    fn = pos - tp
    tn = known - pos - fp
    ap = thresholded_ap_from_counts(tp, fp, pos, known - pos)
    return ap, (_f1(tp, fp, fn) + _f1(tn, fn, fp)) / 2  # state 0: its fp are our fn and vice versa


def group_ids(positions: PositivePositions, rows: np.ndarray, width: int) -> np.ndarray:
    """``(len(rows),)`` group id of each row: rows with equal position lists share an id.

    Args:
        positions: the positives to key on (already restricted), sorted by (row, position).
        rows: ``(R,)`` sorted row ids; every positive's row is among them.
        width: an upper bound on the positions (exclusive).

    The lists are packed exactly (``position + 1`` in ``bits`` bits, zero = empty slot) into as
    few int64 words as the longest list needs, then grouped with one ``np.unique``.
    """
    if not positions.row.size:
        return np.zeros(rows.size, dtype=np.int64)
    # row -> index in ``rows`` by a lookup table: 10x faster than searchsorted over ~1M positives
    index_of_row = np.empty(int(rows[-1]) + 1, dtype=np.int64)
    index_of_row[rows] = np.arange(rows.size)
    local = index_of_row[positions.row]
    bits = int(width).bit_length()
    per_word = 63 // bits
    new_row = np.ones(local.size, dtype=bool)
    new_row[1:] = local[1:] != local[:-1]
    starts = np.flatnonzero(new_row)
    rank = np.arange(local.size) - np.repeat(starts, np.diff(np.append(starts, local.size)))
    words = int(rank.max()) // per_word + 1
    value = (positions.position + 1) << (bits * (rank % per_word))
    cell = local * words + rank // per_word  # non-decreasing: one reduceat per (row, word)
    first = np.flatnonzero(np.concatenate([[True], cell[1:] != cell[:-1]]))
    packed = np.zeros(rows.size * words, dtype=np.int64)
    packed[cell[first]] = np.add.reduceat(value, first)  # disjoint bit fields: sum == or
    return _dense_ids(packed.reshape(rows.size, words))


def _dense_ids(words: np.ndarray) -> np.ndarray:
    """``(R,)`` ids in ``[0, R)``, equal iff the rows of ``(R, W)`` int64 ``words`` are equal.

    One ``unique`` of a wrapping multiply-add hash of the words, then a check that every row
    equals the first row of its hash group; only on a collision (never seen in practice) does
    it fall back to word-by-word exact grouping. 5-10x faster than ``unique(axis=0)``.
    """
    if words.shape[1] == 1:
        return np.unique(words[:, 0], return_inverse=True)[1].reshape(-1)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps on purpose
        mixed = words.view(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)  # splitmix64-style mixing
        mixed ^= mixed >> np.uint64(31)
        mixed *= np.uint64(0x94D049BB133111EB) + np.uint64(2) * np.arange(words.shape[1], dtype=np.uint64)
        mixed ^= mixed >> np.uint64(29)
        hashed = mixed.sum(axis=1, dtype=np.uint64)
    order = np.argsort(hashed)
    new_group = np.empty(hashed.size, dtype=bool)
    new_group[:1] = True
    np.not_equal(hashed[order[1:]], hashed[order[:-1]], out=new_group[1:])
    ids = np.empty(hashed.size, dtype=np.int64)
    ids[order] = np.cumsum(new_group) - 1
    first = order[new_group]  # first row of each hash group
    if (words == words[first[ids]]).all():
        return ids
    ids = np.unique(words[:, 0], return_inverse=True)[1].reshape(-1)
    for k in range(1, words.shape[1]):  # exact: ids * R + next word's id stays below R**2
        word = np.unique(words[:, k], return_inverse=True)[1].reshape(-1)
        ids = np.unique(ids * words.shape[0] + word, return_inverse=True)[1].reshape(-1)
    return ids


def grouped_mean(values: np.ndarray, ids: np.ndarray) -> float:
    """Plain mean over groups of the mean of ``values`` within each group (``(rows,)`` each)."""
    count = np.bincount(ids)
    total = np.bincount(ids, weights=values)
    keep = count > 0
    return float(np.mean(total[keep] / count[keep]))


def hml_scores(g_tp: np.ndarray, g_fp: np.ndarray, g_pos: np.ndarray, g_known: np.ndarray,
               group_depth: np.ndarray, positions: PositivePositions, nodes_up_to: np.ndarray,
               ) -> dict[str, float]:
    """One head's ``hml_ap``, ``hml_f1`` and per-depth ``hml_ap@d{D}``/``hml_f1@d{D}``.

    Args:
        g_tp, g_fp, g_pos, g_known: ``(levels, rows)`` per-row counts at each depth of the head
            (predicted known positives / negatives, known positives, known nodes).
        group_depth: ``(levels,)`` depth of each level (ascending).
        positions: the head's known positives (:func:`positive_positions`).
        nodes_up_to: ``(levels,)`` number of head nodes of depth <= each level's depth.
    """
    out: dict[str, float] = {}
    cum = [np.cumsum(a, axis=0) for a in (g_tp, g_fp, g_pos, g_known)]
    weights, aps, f1s = [], [], []
    for lv, d in enumerate(group_depth.tolist()):
        # applicable: a known positive at depth exactly d; scored: also a relevant known negative
        scored = (g_pos[lv] > 0) & (cum[3][lv] > cum[2][lv])
        rows = np.flatnonzero(scored)
        if not rows.size:
            continue  # the notebook would give NaN for the whole head
        ap, f1 = row_scores(*(c[lv, rows] for c in cum))
        keep = (positions.level <= d) & scored[positions.row]
        # np.compress: 4-5x faster than boolean indexing on irregular masks
        sub = PositivePositions(*(np.compress(keep, getattr(positions, f)) for f in ("row", "level", "position")))
        ids = group_ids(sub, rows, int(nodes_up_to[lv]))
        aps.append(grouped_mean(ap, ids))
        f1s.append(grouped_mean(f1, ids))
        weights.append(rows.size)
        out[f"hml_ap@d{d}"], out[f"hml_f1@d{d}"] = aps[-1], f1s[-1]
    if weights:
        out["hml_ap"] = float(np.average(aps, weights=weights))
        out["hml_f1"] = float(np.average(f1s, weights=weights))
    else:
        out["hml_ap"] = out["hml_f1"] = float("nan")
    return out


def singular_scores(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, depth: np.ndarray) -> dict[str, float]:
    """Singular precision/recall/F1 of one head from ``(nodes,)`` counts (see module doc).

    ``tp``/``fn`` count known targets (predicted / missed); ``fp`` counts known predicted
    non-targets only in rows with a known target at the node's depth. Also ``singular_f1@d{D}``
    and ``singular_{precision,recall,f1}_macro_depth`` (plain mean over depths).
    """
    tp, fp, fn, depth = (np.asarray(x) for x in (tp, fp, fn, depth))
    names = ("singular_precision", "singular_recall", "singular_f1")
    per_depth, counts = [], []
    out: dict[str, float] = {}
    for d in np.unique(depth).tolist():  # a handful of depths, each vectorised over nodes
        at = depth == d
        t_p, f_p, f_n = tp[at], fp[at], fn[at]
        seen = (t_p + f_n + f_p) > 0
        count = int((t_p + f_n).sum())
        if not seen.any() or not count:
            continue
        p = np.where(t_p + f_p > 0, t_p / np.maximum(t_p + f_p, 1), 0.0)[seen]
        r = np.where(t_p + f_n > 0, t_p / np.maximum(t_p + f_n, 1), 0.0)[seen]
        f = np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1.0), 0.0)
        per_depth.append((p.mean(), r.mean(), f.mean()))
        counts.append(count)
        out[f"singular_f1@d{d}"] = float(f.mean())
    for i, name in enumerate(names):
        values = np.array([x[i] for x in per_depth])
        out[name] = float(np.average(values, weights=counts)) if counts else float("nan")
        out[f"{name}_macro_depth"] = float(values.mean()) if counts else float("nan")
    return out


def paper_metrics(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None, hierarchy: Hierarchy,
                  threshold: float = 0.5) -> dict[str, float]:
    """``{"head/hml_ap": ..., "head/hml_f1": ..., "head/singular_f1": ...}`` for every head.

    Args:
        probs: ``(rows, hierarchy.num_nodes)`` coherent probabilities; predicted = ``probs > threshold``.
        targets: ``(rows, num_nodes)`` {0, 1}; mask: same shape, 1 = known (None = all known).

    :func:`~benthicnet_hf.metrics.compute_metrics` reports the same figures (fused with its other
    counts); this standalone entry point computes only these.
    """
    probs, targets, mask = check_metric_inputs(probs, targets, mask)
    positive = targets & mask
    layout = GroupLayout.of(hierarchy)
    cc = confusion_counts_by_group(transpose_blocked(bit_states(probs > threshold, positive, mask)), layout)
    depth = np.asarray(hierarchy.depth, dtype=np.int64)
    out: dict[str, float] = {}
    for h, head in enumerate(hierarchy.heads):
        groups = np.flatnonzero(layout.head == h)
        order = head_order(layout, h)
        positions = positive_positions(positive, mask, order, depth)
        g = slice(int(groups[0]), int(groups[-1]) + 1)
        nodes_up_to = np.cumsum(np.diff(layout.bounds)[g])
        scores = hml_scores(cc.group_tp[g], cc.group_fp[g], cc.group_pos[g], cc.group_known[g],
                            layout.depth[g], positions, nodes_up_to)
        s = hierarchy.head_slice(h)
        fn = cc.node_pos[s] - cc.node_tp[s]
        scores.update(singular_scores(cc.node_tp[s], cc.node_fp_in_group_rows[s], fn, depth[s]))
        out.update({f"{head.name}/{k}": v for k, v in scores.items()})
    return out
