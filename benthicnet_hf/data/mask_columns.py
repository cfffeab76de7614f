"""Masks as the data says: the released table's lists of **unknown** node indices per head.

The BenthicNet release has, per head, a column (``biota_mask``, ``substrate_mask``,
``relief_mask``, ``bedforms_mask``; older releases ``"Biota Mask"`` ...) whose cell lists the node
indices that are unknown for that row, in the reference index order (our node order of
:meth:`Hierarchy.catami`). The authors' code sets mask = 1 everywhere and 0 at the listed indices;
an empty cell (or ``[]``) means fully known.

We apply them on top of the computed masks: ``final = computed AND NOT listed`` (the union of the
unknowns). A listed index must be an integer in ``[0, nodes of the head)``; anything else is a bad
row naming the row and the column. A listed-unknown node that is a **positive** of the same row
(the label says present, the mask list says unknown) is a contradiction, usually a mask list in a
different node order than the labels: it is a bad row too (:func:`positive_conflicts`), never
silently resolved either way.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..hierarchy import Hierarchy
from ..labels import is_missing
from .table import TableColumns

_INT_LIST = re.compile(r"^\s*\[\s*(-?\d+\s*(,\s*-?\d+\s*)*)?\]\s*$")


def resolve_mask_columns(frame: pd.DataFrame, hierarchy: Hierarchy, columns: TableColumns) -> dict[str, str]:
    """head → mask column present in ``frame``: the configured name, ``<head>_mask``, else the older
    ``"<Head> Mask"`` header."""
    found = {}
    for head in hierarchy.head_names:
        for name in (columns.masks.get(head), f"{head}_mask", f"{head.capitalize()} Mask"):
            if name and name in frame.columns:
                found[head] = name
                break
    return found


def _parse_cell(cell: Any) -> list[int] | None:
    """The indices of one cell (empty → ``[]``), or None when the cell is not a list of integers."""
    if is_missing(cell):
        return []
    if isinstance(cell, str):
        return [int(x) for x in json.loads(cell)] if _INT_LIST.match(cell) else None
    if isinstance(cell, (list, tuple, np.ndarray)):
        ok = all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in cell)
        return [int(x) for x in cell] if ok else None
    return None


def listed_unknowns(frame: pd.DataFrame, hierarchy: Hierarchy, mask_columns: Mapping[str, str]
                    ) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """The listed-unknown bits of every row, plus the rows whose cells cannot be used.

    Args:
        frame: the table (``rows`` rows).
        mask_columns: head → mask column (:func:`resolve_mask_columns`).

    Returns:
        ``(unknown, bad)``: ``unknown`` is ``(rows, num_nodes)`` uint8, 1 = listed as unknown;
        ``bad`` holds ``(row0, reason)`` with 0-based row positions (unparsable cells, negative or
        out-of-range indices); those rows list nothing.
    """
    rows = len(frame)
    unknown = np.zeros((rows, hierarchy.num_nodes), dtype=np.uint8)
    bad: list[tuple[int, str]] = []
    for head_name, col in mask_columns.items():
        sl = hierarchy.head_slice(head_name)
        n = sl.stop - sl.start
        cells = frame[col].tolist()
        # parse each distinct cell once (the released table repeats the same lists many times)
        keys = ["" if is_missing(c) else c if isinstance(c, str) else json.dumps(np.asarray(c).tolist())
                if isinstance(c, (list, tuple, np.ndarray)) else repr(c) for c in cells]
        inverse, uniq = pd.factorize(pd.Series(keys, dtype=object))  # hash-based: no string sort
        _, first = np.unique(inverse, return_index=True)  # earliest row of each distinct cell
        parsed = [_parse_cell(cells[i]) for i in first]
        lengths = np.zeros(len(uniq), dtype=np.int64)
        flat: list[int] = []
        bad_code = np.zeros(len(uniq), dtype=bool)
        for c, idx in enumerate(parsed):
            if idx is None:
                bad_code[c] = True
                continue
            wrong = [i for i in idx if i < 0 or i >= n]
            if wrong:
                bad_code[c] = True
                continue
            lengths[c] = len(idx)
            flat.extend(idx)
        for r in np.flatnonzero(bad_code[inverse]):
            idx = parsed[inverse[r]]
            why = (f"unreadable mask cell {cells[r]!r} (expected a list of node indices such as [3, 7])"
                   if idx is None else f"node index(es) {[i for i in idx if i < 0 or i >= n]} outside "
                   f"0..{n - 1} for head {head_name!r}")
            bad.append((int(r), f"column {col!r}: {why}"))
        # scatter: row r gets the indices of its cell's code
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        flat_arr = np.asarray(flat, dtype=np.int64)
        per_row = lengths[inverse]
        row_idx = np.repeat(np.arange(rows), per_row)
        starts = np.repeat(offsets[inverse], per_row)
        within = np.arange(per_row.sum()) - np.repeat(np.cumsum(per_row) - per_row, per_row)
        unknown[row_idx, sl.start + flat_arr[starts + within]] = 1
    return unknown, bad


def positive_conflicts(targets: np.ndarray, unknown: np.ndarray, hierarchy: Hierarchy,
                       mask_columns: Mapping[str, str]) -> list[tuple[int, str]]:
    """Rows where a listed-unknown node is a positive of the row: ``(row0, reason)``.

    Args:
        targets: ``(rows, num_nodes)`` 0/1 targets from the label columns.
        unknown: ``(rows, num_nodes)`` 0/1 listed unknowns (:func:`listed_unknowns`).
    """
    clash = (np.asarray(targets) > 0) & (np.asarray(unknown) > 0)
    bad = []
    for head_name, col in mask_columns.items():
        sl = hierarchy.head_slice(head_name)
        nodes = hierarchy.head(head_name).nodes
        for r in np.flatnonzero(clash[:, sl].any(axis=1)):
            which = [nodes[i] for i in np.flatnonzero(clash[r, sl])]
            bad.append((int(r), f"column {col!r}: node(s) {which[:3]}{' ...' if len(which) > 3 else ''} "
                                f"listed as unknown but labelled present (is the mask list in the "
                                f"hierarchy's node order?)"))
    return bad


def apply_listed_unknowns(mask: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """``mask AND NOT unknown``, both ``(rows, num_nodes)`` uint8."""
    return (np.asarray(mask) & (1 - np.asarray(unknown, dtype=np.uint8))).astype(np.uint8)


__all__ = ["apply_listed_unknowns", "listed_unknowns", "positive_conflicts", "resolve_mask_columns"]
