"""Exact per-positive ranking counts on int32 keys: per row, per (row, depth group), per column, micro.

Every AP here is ``(1 / P) * sum over known positives i of tp(>= s_i) / n(>= s_i)`` inside some
ranking scope (a row, a row restricted to nodes of depth <= d, a column, a set of columns). The
functions return, for each known positive, ``n`` (known items of its scope scored ``>=`` it) and
``tp`` (known positives scored ``>=`` it); keys follow :func:`.inputs.ranking_keys` (positive
``2c``, negative ``2c + 1``, unknown ``1``).

Reading counts from sorted keys: in a sorted scope a positive sorts after every item scored lower
and before the negatives it ties with; positives tied with it are contiguous. So with ``i`` its
index among the positives and ``f`` the index of the first of its ties, ``n = (scope end -
position) + (i - f)`` and ``tp = (positives' end) - f``. Items scored below every positive can be
left out of a scope (:class:`ColumnKeys` does): they change no count. Depth-restricted scopes insert the head's positives as *queries*
(even keys, items made odd) into one sorted block per depth level: one merge per level instead
of a binary search per positive; the items after a query are exactly those scored ``>=`` it.
Micro AP merges each head's sorted columns, then all heads (timsort over already sorted runs:
measured 1.25 s for 51M keys in 330 sorted columns, against 1.36 s for one torch radix sort).
Long columns are sorted by torch (:func:`sort_column_into`), on one thread.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from .inputs import UNKNOWN_KEY, first_of_tie_runs, transpose_blocked

# Below this many keys a column is sorted by numpy: torch's radix sort only runs from its grain
# size (32768) on, and a torch call costs more than numpy's sort of a short column.
TORCH_SORT_MIN = 1 << 15


@contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run torch CPU ops on one thread, restoring the caller's setting afterwards.

    The metrics report process CPU seconds: a second thread on a 1e5-key sort costs ~25% more
    CPU for a shorter wall time, and would compete with the caller's own threads.
    """
    previous = torch.get_num_threads()
    if previous != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if previous != 1:
            torch.set_num_threads(previous)


def sort_column_into(column: np.ndarray, out: np.ndarray,
                     scratch: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
    """Write the ascending sort of a ``(c,)`` int32 ``column`` into ``out`` (``(c,)``, may overlap it).

    Long columns use torch's stable sort, an LSD radix sort for integers: 2.4x less CPU than
    numpy's (non-SIMD) quicksort on 1.5e5 keys in cache (measured, single thread). Sorting plain
    integers, the result is the same array either way. ``scratch``: reused int32 values and
    int64 indices buffers of at least ``c`` elements (torch always computes the indices).
    """
    c = column.size
    if c < TORCH_SORT_MIN:
        column.sort()
        if out is not column:
            out[:] = column
        return
    if scratch is None or scratch[0].numel() < c:
        out[:] = torch.sort(torch.from_numpy(column), stable=True).values.numpy()
        return
    values, indices = scratch[0][:c], scratch[1][:c]
    torch.sort(torch.from_numpy(column), stable=True, out=(values, indices))
    out[:] = values.numpy()


def even_positions(flat: np.ndarray, block: int = 1 << 18) -> np.ndarray:
    """Positions of the even values (positives / queries) of a ``(n,)`` int32 key array.

    Scanned in blocks through two reused buffers: one-shot temporaries of a 25M-key array
    (100 MB + 25 MB) cost fresh pages on every call, 2-4x the scan itself.
    """
    if flat.size <= block:
        return np.flatnonzero((flat & 1) == 0)
    low, even, parts = np.empty(block, dtype=flat.dtype), np.empty(block, dtype=bool), []
    for start in range(0, flat.size, block):
        part = flat[start:start + block]
        np.bitwise_and(part, 1, out=low[:part.size])
        np.equal(low[:part.size], 0, out=even[:part.size])
        parts.append(np.flatnonzero(even[:part.size]) + start)
    return np.concatenate(parts)


def _counts_in_sorted_segments(
    at: np.ndarray, key: np.ndarray, seg: np.ndarray, first_item: np.ndarray,
    num_known: np.ndarray, num_pos: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``(n, tp)`` for positives found at flat positions ``at`` of sorted segments.

    Args:
        at, key, seg: ``(P,)`` position, key and segment of each positive, ordered by (seg, key).
        first_item: ``(segments,)`` flat position of each segment's first known item.
        num_known, num_pos: ``(segments,)`` known items and positives per segment.

    With ``i`` a positive's index and ``f`` the index of the first positive it ties with (both
    in the flat order): ``n = segment end - at + (i - f)`` (the items from it to the end, plus
    the tied positives sorted before it) and ``tp = positives' end - f``.
    """
    if not at.size:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    num_pos = np.asarray(num_pos, dtype=np.int64)
    pos_end = np.cumsum(num_pos)
    new_tie = np.empty(at.size, dtype=bool)
    new_tie[0] = True
    np.not_equal(key[1:], key[:-1], out=new_tie[1:])
    new_tie[(pos_end - num_pos)[num_pos > 0]] = True  # a tie never spans two segments
    f = first_of_tie_runs(new_tie)
    item_end = np.asarray(first_item, dtype=np.int64) + np.asarray(num_known, dtype=np.int64)
    if item_end.size == 1:  # one segment: scalars, no gathers
        n, tp = int(item_end[0]) - at, int(pos_end[0]) - f
    else:
        n, tp = item_end[seg] - at, pos_end[seg] - f
    n += np.arange(at.size)
    n -= f
    return n, tp


def mean_per_segment(seg: np.ndarray, values: np.ndarray, count: np.ndarray) -> np.ndarray:
    """``(segments,)`` mean of ``values`` per segment (``count`` items each); NaN where empty."""
    total = np.bincount(seg, weights=values, minlength=count.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def rank_in_rows(keys: np.ndarray, num_known: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank every known positive inside its row (one int32 row sort).

    Args:
        keys: ``(rows, width)`` int32 keys.
        num_known: ``(rows,)`` known items per row.

    Returns:
        ``(row, n, tp)``, each ``(P,)`` ordered by (row, score).
    """
    rows, width = keys.shape
    ranked = np.sort(keys, axis=1).reshape(-1)
    at = even_positions(ranked)
    key = ranked[at]
    del ranked
    row = at // width
    num_pos = np.bincount(row, minlength=rows)
    first_item = np.arange(rows, dtype=np.int64) * width + (width - num_known)
    n, tp = _counts_in_sorted_segments(at, key, row, first_item, np.asarray(num_known), num_pos)
    return row, n, tp


class ColumnKeys:
    """Kept keys of all rows, column after column (input of :func:`rank_in_columns`).

    Only keys ``>= floor`` are kept (``floor``: the smallest key of any known positive, see
    :func:`.inputs.min_positive_key`): an item scored below every positive is never counted by
    any AP (per node or micro), and in typical score distributions that is a large share of the
    negatives, which then need no sorting or merging. Known keys are ``>= 2`` (unknown is
    ``UNKNOWN_KEY`` = 1), so any ``floor >= 2`` also drops the unknown bits.

    The buffer reserves ``num_known`` slots per column but only the kept keys touch memory:
    fresh pages cost ~3 ms per MB on the project's VM, more than sorting them.

    Args:
        num_known: ``(nodes,)`` known items per column over all rows (the reserved slots).
        floor: keep keys ``>= floor``.
    """

    def __init__(self, num_known: np.ndarray, floor: int = UNKNOWN_KEY + 1):
        self.floor = max(int(floor), UNKNOWN_KEY + 1)
        self.capacity = np.asarray(num_known, dtype=np.int64)
        self.keys = np.empty(int(self.capacity.sum()), dtype=np.int32)
        self.start = np.cumsum(self.capacity) - self.capacity  # first slot of each column
        self.count = np.zeros(self.capacity.size, dtype=np.int64)  # keys kept per column

    def add(self, keys: np.ndarray) -> None:
        """Append a chunk of rows: ``(chunk_rows, nodes)`` int32 keys."""
        if keys.ndim != 2 or keys.shape[1] != self.capacity.size:
            raise ValueError(f"chunk of shape {keys.shape}: expected (rows, {self.capacity.size}) keys")
        keys_t = transpose_blocked(keys)
        keep = keys_t >= self.floor  # known (>= 2) and not below every positive
        count = np.add.reduce(keep, axis=1, dtype=np.int64)
        if ((self.count + count) > self.capacity).any():
            col = int(np.flatnonzero((self.count + count) > self.capacity)[0])
            raise ValueError(f"column {col}: more known keys than announced in num_known ({self.capacity[col]})")
        values = np.extract(keep, keys_t)  # column after column; 5x faster than keys_t[keep]
        ends = np.cumsum(count)
        # One slice copy per column (nodes per chunk, ~1 us each): a fancy-index scatter of the
        # same keys costs 5x more.
        for a, b, at in zip((ends - count).tolist(), ends.tolist(), (self.start + self.count).tolist()):
            self.keys[at:at + b - a] = values[a:b]
        self.count += count


def rank_in_columns(
    column_keys: ColumnKeys, num_pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rank every known positive inside its column.

    Args:
        column_keys: all rows' kept keys (its buffer is reused for ``ranked``).
        num_pos: ``(nodes,)`` known positives per column.

    Returns:
        ``(col, n, tp, ranked)``: per positive (ordered by column, score), and ``ranked``, the
        kept keys column after column (``column_keys.count`` each), each column sorted (reused
        for micro AP). Dropped keys lie below every positive, so ``n`` is unchanged by them.
    """
    buffer, count = column_keys.keys, column_keys.count
    write = 0
    # One contiguous sort per column (~1e5 keys: in cache), moved down over the unused slots
    # (write <= a: the sorted copy is complete before it is written back).
    longest = int(count.max(initial=0))
    scratch = (torch.empty(longest, dtype=torch.int32), torch.empty(longest, dtype=torch.int64))
    with single_torch_thread():
        for a, c in zip(column_keys.start.tolist(), count.tolist()):
            sort_column_into(buffer[a:a + c], buffer[write:write + c], scratch)
            write += c
    ranked = buffer[:write]
    at = even_positions(ranked)
    if at.size != int(np.sum(num_pos)):
        raise ValueError(f"{at.size} positives kept but num_pos counts {int(np.sum(num_pos))}: "
                         f"ColumnKeys' floor {column_keys.floor} is above some positive's key")
    col = np.repeat(np.arange(count.size), num_pos)
    starts = np.cumsum(count) - count
    n, tp = _counts_in_sorted_segments(at, ranked[at], col, starts, count, np.asarray(num_pos))
    return col, n, tp, ranked


def micro_ap_of_sorted(ranked: np.ndarray) -> tuple[float, np.ndarray]:
    """Micro AP of one sorted ``(items,)`` key array; also its positive keys (sorted)."""
    at = even_positions(ranked)
    if not at.size:
        return float("nan"), ranked[at]
    key = ranked[at]
    seg = np.zeros(at.size, dtype=np.int64)
    n, tp = _counts_in_sorted_segments(
        at, key, seg, np.zeros(1, np.int64), np.array([ranked.size]), np.array([at.size]))
    return float(np.mean(tp / n)), key


def grouped_micro_ap(ranked: np.ndarray, bounds: list[tuple[int, int]]) -> tuple[float, list[float]]:
    """Micro AP of all of ``ranked`` and of each group ``ranked[a:b]`` alone; sorts ``ranked`` in place.

    Args:
        ranked: ``(items,)`` int32 known keys, overwritten (left sorted).
        bounds: ``(a, b)`` per group (e.g. a head's columns in :func:`rank_in_columns` order).
    """
    per_group = []
    # "stable" is timsort for int32: it merges the already sorted runs (columns, then groups)
    # instead of sorting from scratch, 2-5x faster than the default quicksort here.
    for a, b in bounds:
        ranked[a:b].sort(kind="stable")
        per_group.append(micro_ap_of_sorted(ranked[a:b])[0])
    if len(bounds) != 1 or bounds[0] != (0, ranked.size):
        ranked.sort(kind="stable")
    return micro_ap_of_sorted(ranked)[0], per_group


def sorted_positives(
    keys: np.ndarray, positive: np.ndarray, owner_of_col: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Known positives sorted by (owner of their column, row, key).

    Args:
        keys: ``(rows, nodes)`` int32 keys; positive: ``(rows, nodes)`` bool.
        owner_of_col: ``(nodes,)`` small non-negative ints (e.g. the head of each node).

    Returns:
        ``(owner, row, col, key)``, each ``(P,)``.
    """
    rows, nodes = keys.shape
    flat = np.flatnonzero(positive)
    row, col = np.divmod(flat, nodes)
    key = keys.reshape(-1)[flat].astype(np.int64)
    owner = owner_of_col[col].astype(np.int64)
    group = owner * rows + row
    col_bits = max(1, int(nodes - 1).bit_length())
    if int(group.max(initial=0)).bit_length() + 31 + col_bits <= 63:  # pack: one int64 sort
        packed = np.sort(((group << 31 | key) << col_bits) | col)
        col = packed & ((1 << col_bits) - 1)
        packed >>= col_bits
        key, group = packed & 0x7FFFFFFF, packed >> 31
    else:
        order = np.lexsort((key, group))
        key, group, col = key[order], group[order], col[order]
    owner, row = np.divmod(group, rows)
    return owner, row, col, key.astype(np.int32)


def counts_at_positives_by_group(
    keys: np.ndarray, group_cols: list[np.ndarray], pos_row: np.ndarray, pos_key: np.ndarray,
) -> np.ndarray:
    """``(groups, P)`` known items of each group in the positive's row scored ``>=`` it.

    Args:
        keys: ``(rows, nodes)`` int32 keys.
        group_cols: column indices of each group (e.g. one head's nodes of depth 1, 2, ...).
        pos_row, pos_key: ``(P,)`` the positives of those columns, sorted by (row, key).

    Each group's items (made odd) and the row's positives (even queries, padded with
    ``UNKNOWN_KEY``) share one block row; one sort per block places every query after exactly
    the items scored lower, the padding and the queries before it.
    """
    out = np.zeros((len(group_cols), pos_row.size), dtype=np.int64)
    if not pos_row.size:
        return out
    new_row = np.ones(pos_row.size, dtype=bool)
    new_row[1:] = pos_row[1:] != pos_row[:-1]
    active = pos_row[new_row]  # rows without a positive need no block row
    local = np.cumsum(new_row) - 1
    q = np.diff(np.append(np.flatnonzero(new_row), pos_row.size))
    qmax = int(q.max())
    rank = np.arange(pos_row.size) - (np.cumsum(q) - q)[local]
    queries = np.full((active.size, qmax), UNKNOWN_KEY, dtype=np.int32)
    queries[local, rank] = pos_key
    order = np.concatenate(group_cols)
    # Items of the active rows, group after group, all made odd (unknown stays UNKNOWN_KEY).
    items = np.take(keys[active] if active.size < keys.shape[0] else keys, order, axis=1)
    items |= 1
    after_rank = rank - q[local]  # minus the queries after this one (and itself)
    start = 0
    for g, cols in enumerate(group_cols):
        w = cols.size
        if not w:
            continue
        width = w + qmax
        block = np.empty((active.size, width), dtype=np.int32)
        block[:, :w] = items[:, start:start + w]
        block[:, w:] = queries
        start += w
        block.sort(axis=1)
        at = even_positions(block.reshape(-1))
        del block
        # Items after a query are exactly the known items scored >= it (padding and unknown
        # sort first): the row's remaining slots minus the queries still to come.
        out[g] = (local + 1) * width + after_rank - at
    return out


def ap_by_depth(
    counts: np.ndarray, pos_row: np.ndarray, pos_key: np.ndarray, pos_level: np.ndarray, rows: int,
) -> np.ndarray:
    """``(rows, levels)`` per-sample AP over known nodes of level <= d (column d), NaN if no positive.

    Args:
        counts: ``(levels, P)`` from :func:`counts_at_positives_by_group` (one group per level).
        pos_row, pos_key: ``(P,)`` sorted by (row, key); pos_level: ``(P,)`` 0-based level.

    Works on ``(levels, P)`` arrays: every sum runs along contiguous memory (no axis-0 cumsum).
    """
    levels, num = counts.shape
    out = np.full((rows, levels), np.nan)
    if not num:
        return out
    # tp(>= s) per level: positives of the row from the first of s's ties to the row's end.
    prefix = np.zeros((levels, num + 1), dtype=np.int32)
    prefix[pos_level, np.arange(1, num + 1)] = 1
    np.cumsum(prefix, axis=1, out=prefix)  # prefix[:, i] = positives before i, per level
    new_row = np.ones(num, dtype=bool)
    new_row[1:] = pos_row[1:] != pos_row[:-1]
    new_tie = new_row.copy()
    new_tie[1:] |= pos_key[1:] != pos_key[:-1]
    row_start = np.flatnonzero(new_row)
    row_stop = np.append(row_start[1:], num)
    tp = np.take(prefix, row_stop[np.cumsum(new_row) - 1], axis=1)
    tp -= np.take(prefix, first_of_tie_runs(new_tie), axis=1)
    num_counted = prefix[:, row_stop] - prefix[:, row_start]
    n = counts.copy()
    for d in range(1, levels):  # levels <= depth 'restricted to <= d': running sums over levels
        tp[d] += tp[d - 1]
        n[d] += n[d - 1]
        num_counted[d] += num_counted[d - 1]
    counted = pos_level[None, :] <= np.arange(levels)[:, None]
    precision = np.divide(tp, n, out=np.zeros(tp.shape), where=counted)
    total = np.add.reduceat(precision, row_start, axis=1)  # (levels, rows with a positive)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[pos_row[row_start]] = np.where(num_counted > 0, total / num_counted, np.nan).T
    return out
