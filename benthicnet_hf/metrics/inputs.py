"""Input checks and exact integer score codes shared by the metric functions.

Every metric takes numpy arrays over the global node layout of a
:class:`~benthicnet_hf.hierarchy.Hierarchy`:

- ``probs`` ``(rows, nodes)`` float in ``[0, 1]`` (coherent probabilities);
- ``targets`` ``(rows, nodes)`` in ``{0, 1}`` (1 = present);
- ``mask`` ``(rows, nodes)`` in ``{0, 1}`` (1 = the target bit is *known*). Only known bits count.

Ranking metrics never sort floats with payloads (``argsort`` of 62M values takes >10 s). They turn
each score into a non-negative ``int32`` **code** whose order is the order of the scores, ties
included, and then sort plain integer rows (fast SIMD sorts) with a marker bit in the lowest bit:
:func:`rank_positives_in_rows` and :func:`count_items_at_least` then read every count from the
positions in the sorted rows, with no per-query binary search.
"""

from __future__ import annotations

import numpy as np

CODE_BITS = 31  # codes live in [1, 2**31); 0 marks an absent (masked) item


def check_metric_inputs(
    probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate shapes and values; return ``(probs, targets bool, mask bool)``.

    ``mask=None`` means every bit is known. Errors name the first offending (row, node).
    """
    probs = np.asarray(probs)
    targets = np.asarray(targets)
    mask = np.ones(targets.shape, dtype=bool) if mask is None else np.asarray(mask)
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D (rows, nodes), got shape {probs.shape}")
    for name, arr in (("targets", targets), ("mask", mask)):
        if arr.shape != probs.shape:
            raise ValueError(f"{name} has shape {arr.shape}, expected probs' shape {probs.shape}")
        if arr.dtype != bool:
            bad = (arr != 0) & (arr != 1)
            if bad.any():
                r, c = np.argwhere(bad)[0]
                raise ValueError(f"{name}[{r}, {c}] = {arr[r, c]!r}: expected 0 or 1")
    if not np.issubdtype(probs.dtype, np.floating):
        raise TypeError(f"probs must be a float array, got dtype {probs.dtype}")
    bad = ~((probs >= 0) & (probs <= 1))  # also catches NaN
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(
            f"probs[{r}, {c}] = {probs[r, c]!r}: expected a probability in [0, 1] "
            "(pass sigmoid/coherent probabilities, not logits)"
        )
    return probs, targets.astype(bool, copy=False), mask.astype(bool, copy=False)


def score_codes(probs: np.ndarray) -> np.ndarray:
    """``(rows, nodes)`` int32 codes in ``[1, 2**31)``, equal iff the scores are equal, same order.

    float32 scores (or float64 that are exactly float32 values) use their IEEE bit pattern, which
    is monotone for non-negative floats. Other float64 scores fall back to dense ranks (one global
    sort, slower) so that ties and order stay exact.
    """
    p32 = probs.astype(np.float32, copy=False)
    if probs.dtype != np.float32 and not np.array_equal(p32, probs):
        _, inverse = np.unique(probs, return_inverse=True)
        return (inverse.reshape(probs.shape) + 1).astype(np.int32)
    p32 = p32 + np.float32(0.0)  # -0.0 -> +0.0 so that both get the same code
    return p32.view(np.int32) + np.int32(1)


def rank_positives_in_rows(codes: np.ndarray, positive: np.ndarray, known: np.ndarray):
    """Rank every known positive inside its row among the row's known items (one int32 row sort).

    Args:
        codes: ``(rows, width)`` int32 codes from :func:`score_codes`.
        positive, known: ``(rows, width)`` bool, ``positive`` implies ``known``.

    Returns:
        ``(row, n, tp)`` for each known positive, ordered by (row, code): ``n`` = known items of
        the row scored ``>=`` it, ``tp`` = known positives of the row scored ``>=`` it.

    Keys are ``code << 1 | is_negative`` (0 = unknown): positives sort just before the negatives
    they tie with, so the items before a positive are exactly those scored lower, minus the
    positives tied with it (contiguous, counted from the first of them).
    """
    rows, width = codes.shape
    keys = np.left_shift(codes, 1, dtype=np.int32)
    keys |= ~positive
    keys *= known  # in place: unknown -> 0
    keys.sort(axis=1)
    flat = keys.reshape(-1)
    at = np.flatnonzero((flat & 1) == 0)
    at = at[flat[at] != 0]
    row = at // width
    code = flat[at] >> 1
    num_known = known.sum(axis=1)
    num_pos = np.bincount(row, minlength=rows)
    rank = np.arange(at.size) - (np.cumsum(num_pos) - num_pos)[row]  # rank among row's positives
    new_tie = np.ones(at.size, dtype=bool)
    new_tie[1:] = (row[1:] != row[:-1]) | (code[1:] != code[:-1])
    # maximum.accumulate restarts at each row because ranks restart at 0 with new_tie set
    tie_first = _restart_accumulate(np.where(new_tie, rank, -1), row)
    zeros = width - num_known
    lower = at - row * width - zeros[row] - (rank - tie_first)  # known items scored lower
    return row, num_known[row] - lower, num_pos[row] - tie_first


def _restart_accumulate(first_marks: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Forward-fill the last non-negative value within each row run (values restart per row)."""
    idx = np.where(first_marks >= 0, np.arange(first_marks.size), 0)
    np.maximum.accumulate(idx, out=idx)
    return first_marks[idx]


def count_items_at_least(items: np.ndarray, query_codes: np.ndarray, query_row: np.ndarray) -> np.ndarray:
    """For queries sorted by (row, code): items of the query's row with code ``>=`` the query's.

    Args:
        items: ``(rows, width)`` int32 codes, 0 = absent.
        query_codes, query_row: ``(queries,)`` sorted by (row, code), codes >= 1.

    The queries are written into their rows beside the items (``code << 1``, items
    ``code << 1 | 1``) and each row sorted once; the k-th query found in a row is the k-th query
    of that row, so no payload is needed.
    """
    rows, width = items.shape
    per_row = np.bincount(query_row, minlength=rows)
    qmax = int(per_row.max()) if per_row.size else 0
    starts = np.cumsum(per_row) - per_row
    rank = np.arange(query_row.size) - starts[query_row]
    block = np.zeros((rows, width + qmax), dtype=np.int32)
    np.left_shift(items, 1, out=block[:, :width])
    block[:, :width] |= (items > 0)
    block[query_row, width + rank] = query_codes << 1
    block.sort(axis=1)
    flat = block.reshape(-1)
    at = np.flatnonzero((flat & 1) == 0)
    at = at[flat[at] != 0]
    num_items = (items > 0).sum(axis=1)
    zeros = width + qmax - num_items - per_row
    lower = at - query_row * (width + qmax) - zeros[query_row] - rank
    return num_items[query_row] - lower
