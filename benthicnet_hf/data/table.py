"""Reading a BenthicNet-style label table.

One row per image. Column names are configurable (:class:`TableColumns`); the defaults are the
names of the released BenthicNet table (``image``, ``dataset``, ``site``, ``latitude``,
``longitude``, ``date``, ``partition``, ``catami_biota`` ... ``colour_qualifier``).

A label cell holds either

- CATAMI label paths, several per cell separated by ``;`` or ``|`` (or a JSON list), optionally
  with their head token (``"[SUBSTRATE] > Substrate > ..."``); or
- a list of **node indices** as in the released ``benthicnet_nn.csv`` (``"[0, 6, 12]"``), in the
  reference index order, which is the node order of :meth:`Hierarchy.catami` for every head. They
  are mapped back to label paths here, so masks are always computed by
  :class:`~benthicnet_hf.labels.LabelEncoder` (the table's pre-baked ``*_mask`` columns are ignored).

The table may also be an image folder holding ``metadata.jsonl`` or ``metadata.csv`` with a
``file_name`` column (the Hugging Face ``imagefolder`` layout).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..hierarchy import Hierarchy
from ..labels import is_missing, split_cell

DEFAULT_LABEL_COLUMNS: dict[str, str] = {
    "biota": "catami_biota",
    "substrate": "catami_substrate",
    "relief": "catami_relief",
    "bedforms": "catami_bedforms",
    "colour": "colour_qualifier",
}
# headers of older releases of the BenthicNet table, accepted when the default name is absent
LEGACY_LABEL_COLUMNS: dict[str, tuple[str, ...]] = {
    "biota": ("CATAMI Biota",),
    "substrate": ("CATAMI Substrate",),
    "relief": ("CATAMI Relief",),
    "bedforms": ("CATAMI Bedforms",),
    "colour": ("Colour-qualifier", "CATAMI Colour"),
}
METADATA_FIELDS = ("dataset", "site", "latitude", "longitude", "date")
_INDEX_LIST = re.compile(r"^\s*\[\s*(\d+\s*(,\s*\d+\s*)*)?\]\s*$")


class TableError(ValueError):
    """The table cannot be read (missing file, missing column). The message names what is at fault."""


class BadRowError(ValueError):
    """One or more rows cannot be used. ``rows`` lists ``(row, reason)``; the message names them."""

    def __init__(self, rows: list[tuple[int, str]], source: str = "table") -> None:
        self.rows = rows
        shown = "; ".join(f"row {r}: {why}" for r, why in rows[:5])
        more = f" (and {len(rows) - 5} more)" if len(rows) > 5 else ""
        super().__init__(f"{source}: {len(rows)} bad row(s): {shown}{more}. "
                         "Fix them or pass skip_bad=True (--skip-bad) to skip them with a report.")


@dataclass
class TableColumns:
    """Names of the table's columns. ``None`` means the table has no such column.

    Args:
        image: relative image path (joined to ``image_root``).
        dataset, site, latitude, longitude, date: metadata columns.
        partition: optional explicit split column (``train``/``val``/``test``...).
        labels: head name → label column. Heads whose column is absent are missing for every row.
    """

    image: str = "image"
    dataset: str | None = "dataset"
    site: str | None = "site"
    latitude: str | None = "latitude"
    longitude: str | None = "longitude"
    date: str | None = "date"
    partition: str | None = "partition"
    labels: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_LABEL_COLUMNS))

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any] | None) -> "TableColumns":
        """Defaults updated with ``overrides`` (a ``labels`` dict is merged, not replaced)."""
        cols = cls()
        for key, value in (overrides or {}).items():
            if key == "labels":
                cols.labels.update(value)
            elif key in cls.__dataclass_fields__:
                setattr(cols, key, value)
            else:
                raise KeyError(f"unknown column setting {key!r}; known: {sorted(cls.__dataclass_fields__)}")
        return cols


def read_table(table: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, Path | None]:
    """Load the table as strings-preserving pandas frame.

    Returns:
        ``(frame, folder)`` where ``folder`` is the image folder when ``table`` is an image folder
        with ``metadata.jsonl``/``metadata.csv`` (its ``file_name`` column is renamed ``image``),
        else None.
    """
    if isinstance(table, pd.DataFrame):
        return table.reset_index(drop=True), None
    path = Path(table)
    if path.is_dir():
        for name in ("metadata.jsonl", "metadata.csv"):
            if (path / name).exists():
                frame, _ = read_table(path / name)
                if "file_name" in frame.columns and "image" not in frame.columns:
                    frame = frame.rename(columns={"file_name": "image"})
                return frame, path
        raise TableError(f"{path} is a folder without metadata.jsonl or metadata.csv")
    if not path.exists():
        raise TableError(f"table {path} does not exist")
    suffixes = "".join(path.suffixes[-2:]).lower()
    if suffixes.endswith((".jsonl", ".jsonl.gz")):
        frame = pd.read_json(path, lines=True, dtype=False)
    elif suffixes.endswith(".parquet"):
        frame = pd.read_parquet(path)
    else:
        sep = "\t" if suffixes.endswith((".tsv", ".tsv.gz")) else ","
        # keep_default_na=False: a literal "None" (a bedforms class) must not become NaN
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    return frame.reset_index(drop=True), None


def resolve_label_columns(frame: pd.DataFrame, hierarchy: Hierarchy, columns: TableColumns) -> dict[str, str]:
    """head → column actually present in ``frame`` (configured name, else a legacy header)."""
    found = {}
    for head in hierarchy.head_names:
        name = columns.labels.get(head)
        if name is not None and name in frame.columns:
            found[head] = name
            continue
        for legacy in LEGACY_LABEL_COLUMNS.get(head, ()):
            if legacy in frame.columns:
                found[head] = legacy
                break
    unknown = set(columns.labels) - set(hierarchy.head_names)
    if unknown:
        raise TableError(f"label columns configured for unknown head(s) {sorted(unknown)}; "
                         f"heads are {hierarchy.head_names}")
    if not found:
        raise TableError(f"no label column found; expected one of {sorted(columns.labels.values())}, "
                         f"table has {list(frame.columns)}")
    return found


def _index_list(cell: Any) -> list[int] | None:
    """The indices of an index-list cell (``"[0, 6]"`` or a list of ints), else None."""
    if isinstance(cell, str) and _INDEX_LIST.match(cell):
        return [int(x) for x in json.loads(cell)]
    if isinstance(cell, (list, tuple, np.ndarray)) and len(cell) and all(
        isinstance(x, (int, np.integer)) for x in cell
    ):
        return [int(x) for x in cell]
    return None


def label_strings(frame: pd.DataFrame, hierarchy: Hierarchy, label_columns: Mapping[str, str]
                  ) -> tuple[dict[str, list[list[str] | None]], list[tuple[int, str]]]:
    """Per head, each row's label strings (None = missing head), plus rows that cannot be read.

    Index-list cells are mapped to node keys; an index outside the head is a bad row.
    """
    out: dict[str, list[list[str] | None]] = {}
    bad: list[tuple[int, str]] = []
    for head_name, col in label_columns.items():
        head = hierarchy.head(head_name)
        cells = frame[col].tolist()
        labels: list[list[str] | None] = []
        for r, cell in enumerate(cells):
            idx = _index_list(cell)
            if idx is not None:
                wrong = [i for i in idx if i >= len(head.nodes)]
                if wrong:
                    bad.append((r, f"column {col!r}: node index(es) {wrong} out of range for head "
                                   f"{head_name!r} ({len(head.nodes)} nodes)"))
                    labels.append(None)
                    continue
                labels.append([head.nodes[i] for i in idx] or None)
                continue
            if isinstance(cell, str) and re.match(r'^\s*\[\s*"', cell):
                # a JSON list of label strings, e.g. from metadata.jsonl written as text
                try:
                    cell = json.loads(cell)
                except json.JSONDecodeError:
                    bad.append((r, f"column {col!r}: unreadable list cell {cell!r}"))
                    labels.append(None)
                    continue
            parts = split_cell(cell)
            labels.append(parts or None)
        out[head_name] = labels
    return out, bad


def _float_column(frame: pd.DataFrame, col: str | None, bad: list[tuple[int, str]]) -> list[float]:
    if col is None or col not in frame.columns:
        return [math.nan] * len(frame)
    values = pd.to_numeric(frame[col], errors="coerce")
    for r in np.flatnonzero(values.isna().to_numpy() & ~frame[col].map(is_missing).to_numpy()):
        bad.append((int(r), f"column {col!r}: {frame[col].iloc[r]!r} is not a number"))
    return values.astype(float).tolist()


def metadata_columns(frame: pd.DataFrame, columns: TableColumns
                     ) -> tuple[dict[str, list[Any]], list[tuple[int, str]]]:
    """The metadata columns under their canonical names, plus rows with unreadable values."""
    bad: list[tuple[int, str]] = []
    if columns.image not in frame.columns:
        raise TableError(f"image column {columns.image!r} not in table columns {list(frame.columns)}")
    images = frame[columns.image].tolist()
    for r, p in enumerate(images):
        if is_missing(p):
            bad.append((r, f"column {columns.image!r}: empty image path"))
    meta: dict[str, list[Any]] = {"image_path": ["" if is_missing(p) else str(p) for p in images]}
    for key in ("dataset", "site", "date"):
        col = getattr(columns, key)
        meta[key] = (["" if is_missing(v) else str(v) for v in frame[col].tolist()]
                     if col is not None and col in frame.columns else [""] * len(frame))
    meta["latitude"] = _float_column(frame, columns.latitude, bad)
    meta["longitude"] = _float_column(frame, columns.longitude, bad)
    return meta, bad
