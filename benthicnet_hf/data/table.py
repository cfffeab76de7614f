"""Reading a BenthicNet-style label table.

One row per image. Column names are configurable (:class:`TableColumns`); the defaults are the
names of the released BenthicNet table (``image``, ``dataset``, ``site``, ``latitude``,
``longitude``, ``date``, ``partition``, ``catami_biota`` ... ``colour_qualifier``).

A label cell holds either

- CATAMI label paths, several per cell separated by ``;`` or ``|`` (or a JSON list), optionally
  with their head token (``"[SUBSTRATE] > Substrate > ..."``); or
- a list of **node indices** as in the released ``benthicnet_nn.csv`` (``"[0, 6, 12]"``), in the
  reference index order, which is the node order of :meth:`Hierarchy.catami` for every head. They
  are mapped back to label paths here, and masks are computed by
  :class:`~benthicnet_hf.labels.LabelEncoder`.

Optional ``<head>_mask`` columns (``biota_mask`` ... as released, or the older ``"Biota Mask"``
headers; :attr:`TableColumns.masks`) list each row's **unknown** node indices in the same order; an
empty cell means fully known. They are applied on top of the computed masks (see
:mod:`.mask_columns`).

CSV/TSV files are read as text with ``keep_default_na=False``: only truly empty cells are missing,
so the CATAMI class "None" (bedforms) and strings such as "NA" stay labels. A delimiter other than
the expected one (``;`` or tab in a ``.csv``) is detected from the header line.

The table may also be an image folder holding ``metadata.jsonl`` or ``metadata.csv`` with a
``file_name`` column (the Hugging Face ``imagefolder`` layout).
"""

from __future__ import annotations

import csv
import difflib
import gzip
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..hierarchy import Hierarchy
from ..labels import is_missing, split_cell

logger = logging.getLogger(__name__)

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
ROW_CONVENTION = "rows are 1-based data rows, header not counted: data row N is spreadsheet row N+1"
_INDEX_LIST = re.compile(r"^\s*\[\s*(\d+\s*(,\s*\d+\s*)*)?\]\s*$")


class TableError(ValueError):
    """The table cannot be read (missing file, missing column). The message names what is at fault."""


class BadRowError(ValueError):
    """One or more rows cannot be used. ``rows`` lists ``(row, reason)``; the message names them."""

    def __init__(self, rows: list[tuple[int, str]], source: str = "table") -> None:
        self.rows = rows  # 0-based row positions
        shown = "; ".join(f"row {r + 1}: {why}" for r, why in rows[:5])
        more = f" (and {len(rows) - 5} more)" if len(rows) > 5 else ""
        super().__init__(f"{source}: {len(rows)} bad row(s) ({ROW_CONVENTION}): {shown}{more}. "
                         "Fix them or pass skip_bad=True (--skip-bad) to skip them with a report.")


@dataclass
class TableColumns:
    """Names of the table's columns. ``None`` means the table has no such column.

    Args:
        image: relative image path (joined to ``image_root``).
        dataset, site, latitude, longitude, date: metadata columns.
        partition: optional explicit split column (``train``/``val``/``test``...).
        labels: head name → label column. Heads whose column is absent are missing for every row.
        masks: head name → column of listed unknown node indices (default ``<head>_mask``, else
            the older ``"<Head> Mask"`` header); absent = nothing listed.
        explicit: the settings given as overrides (``"site"``, ``"labels.biota"``,
            ``"masks.biota"``): those columns must exist.
    """

    image: str = "image"
    dataset: str | None = "dataset"
    site: str | None = "site"
    latitude: str | None = "latitude"
    longitude: str | None = "longitude"
    date: str | None = "date"
    partition: str | None = "partition"
    labels: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_LABEL_COLUMNS))
    masks: dict[str, str] = field(default_factory=dict)
    explicit: set[str] = field(default_factory=set)

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any] | None) -> "TableColumns":
        """Defaults updated with ``overrides`` (``labels``/``masks`` dicts are merged, not replaced)."""
        cols = cls()
        for key, value in (overrides or {}).items():
            if key in ("labels", "masks"):
                getattr(cols, key).update(value)
                cols.explicit |= {f"{key}.{h}" for h, v in value.items() if v is not None}
            elif key in cls.__dataclass_fields__ and key != "explicit":
                setattr(cols, key, value)
                if value is not None:
                    cols.explicit.add(key)
            else:
                raise KeyError(f"unknown column setting {key!r}; known: "
                               f"{sorted(set(cls.__dataclass_fields__) - {'explicit'})}")
        return cols

    def named(self, setting: str) -> str | None:
        """The column name of ``"site"``, ``"labels.biota"`` or ``"masks.biota"``."""
        kind, _, head = setting.partition(".")
        return getattr(self, kind).get(head) if head else getattr(self, kind)


def check_explicit_columns(frame: pd.DataFrame, columns: TableColumns, where: str) -> None:
    """Every column named in an override must exist: a typo would silently empty a head or field."""
    missing = [(s, columns.named(s)) for s in sorted(columns.explicit) if columns.named(s) not in frame.columns]
    if missing:
        parts = []
        for setting, name in missing:
            close = difflib.get_close_matches(str(name), [str(c) for c in frame.columns], n=3, cutoff=0.6)
            parts.append(f"{setting}={name!r}" + (f" (close: {close})" if close else ""))
        raise TableError(f"{where}: column(s) named in columns= do not exist: {'; '.join(parts)}. "
                         f"The table's columns are {list(frame.columns)}")


def _sniff_separator(path: Path, expected: str) -> str:
    """The delimiter of the header line: ``expected`` if present, else ``;``/tab/``,`` when found.

    Raises:
        TableError: empty file or a header line that is not UTF-8, naming the file.
    """
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rb") as f:
        head = f.read(65536)
    if not head.strip():
        raise TableError(f"table {path} is empty (no header line)")
    line = head.lstrip(b"\xef\xbb\xbf").splitlines()[0]
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TableError(f"table {path} is not UTF-8 text (byte {err.start} of the header line is "
                         f"{line[err.start:err.start + 1]!r}); save it as UTF-8 (e.g. 'CSV UTF-8')") from err
    if expected in text:
        return expected
    counts = {sep: len(next(csv.reader([text], delimiter=sep))) - 1 for sep in (";", "\t", ",", "|")}
    best = max(counts, key=counts.get)
    if counts[best] > 0:
        logger.warning("table %s: header is separated by %r, not %r; reading it with %r", path, best,
                       expected, best)
        return best
    return expected


def _read_delimited(path: Path, expected: str) -> pd.DataFrame:
    """A CSV/TSV as text: only empty cells are missing (``"None"``, ``"NA"`` stay strings)."""
    sep = _sniff_separator(path, expected)
    try:
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""],
                           encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise TableError(f"table {path} is not UTF-8 text ({err.reason} at byte {err.start}); save it as "
                         "UTF-8 (e.g. 'CSV UTF-8')") from err
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise TableError(f"table {path} cannot be parsed with delimiter {sep!r}: {err}") from err


def read_table(table: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, Path | None]:
    """Load the table as strings-preserving pandas frame.

    Returns:
        ``(frame, folder)`` where ``folder`` is the image folder when ``table`` is an image folder
        with ``metadata.jsonl``/``metadata.csv`` (its ``file_name`` column is renamed ``image``),
        else None.
    """
    if isinstance(table, pd.DataFrame):
        if len(table) == 0:
            raise TableError(f"the table has columns {list(table.columns)} but no data rows")
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
        # keep_default_na=False: a literal "None" (a bedforms class) must not become NaN
        frame = _read_delimited(path, "\t" if suffixes.endswith((".tsv", ".tsv.gz")) else ",")
    if len(frame) == 0:
        raise TableError(f"table {path} has a header ({list(frame.columns)}) but no data rows")
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
    _check_misspelled_label_columns(frame, hierarchy, columns, found)
    if not found:
        raise TableError(f"no label column found; expected one of {sorted(columns.labels.values())}, "
                         f"table has {list(frame.columns)}")
    return found


def known_column_names(hierarchy: Hierarchy, columns: TableColumns) -> set[str]:
    """Every column name the reader understands (configured, default and legacy)."""
    names = {columns.image, columns.dataset, columns.site, columns.latitude, columns.longitude,
             columns.date, columns.partition, "file_name"}
    for head in hierarchy.head_names:
        names |= {columns.labels.get(head), f"{head}_mask", columns.masks.get(head),
                  f"{head.capitalize()} Mask", *LEGACY_LABEL_COLUMNS.get(head, ())}
    return {n for n in names if n}


def _check_misspelled_label_columns(frame: pd.DataFrame, hierarchy: Hierarchy, columns: TableColumns,
                                    found: Mapping[str, str]) -> None:
    """A head without its column, while an unused column is a near miss of it, is a typo, not a
    missing head: raise rather than mask the head on every row."""
    unused = [str(c) for c in frame.columns if c not in known_column_names(hierarchy, columns)]
    typos = []
    for head in hierarchy.head_names:
        if head in found:
            continue
        expected = [n for n in (columns.labels.get(head), *LEGACY_LABEL_COLUMNS.get(head, ())) if n]
        close = sorted({m for n in expected for m in difflib.get_close_matches(n, unused, n=2, cutoff=0.8)})
        if close:
            typos.append(f"head {head!r} expects column {expected[0]!r}, the table has {close}")
    if typos:
        raise TableError("label column(s) look misspelled: " + "; ".join(typos)
                         + ". Rename the column or map it with columns={'labels': {HEAD: NAME}} "
                         f"(--label-column HEAD=NAME). The table's columns are {list(frame.columns)}")


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


def _float_column(frame: pd.DataFrame, col: str | None, bad: list[tuple[int, str]],
                  limit: float = math.inf) -> list[float]:
    """A numeric column; unparsable values and values outside ``[-limit, limit]`` are bad rows."""
    if col is None or col not in frame.columns:
        return [math.nan] * len(frame)
    values = pd.to_numeric(frame[col], errors="coerce")
    for r in np.flatnonzero(values.isna().to_numpy() & ~frame[col].map(is_missing).to_numpy()):
        bad.append((int(r), f"column {col!r}: {frame[col].iloc[r]!r} is not a number"))
    arr = values.astype(float).to_numpy()
    for r in np.flatnonzero(np.abs(np.nan_to_num(arr, nan=0.0)) > limit):
        bad.append((int(r), f"column {col!r}: {frame[col].iloc[r]!r} is outside [-{limit:g}, {limit:g}]"))
    return arr.tolist()


def _date_column(frame: pd.DataFrame, col: str | None, bad: list[tuple[int, str]]) -> list[str]:
    """The date column as written; values that do not parse as a date are bad rows."""
    if col is None or col not in frame.columns:
        return [""] * len(frame)
    text = frame[col].map(lambda v: "" if is_missing(v) else str(v).strip())
    parsed = pd.to_datetime(text.where(text != ""), errors="coerce", format="mixed")
    for r in np.flatnonzero(parsed.isna().to_numpy() & (text != "").to_numpy()):
        bad.append((int(r), f"column {col!r}: {text.iloc[r]!r} is not a date"))
    return text.tolist()


def _duplicate_images(images: list[str], col: str, bad: list[tuple[int, str]]) -> None:
    """Rows naming an image already named by an earlier row (each repeat names the first row)."""
    series = pd.Series(images)
    repeats = series.duplicated(keep="first").to_numpy() & (series != "").to_numpy()
    first = series.drop_duplicates(keep="first")
    first_row = pd.Series(first.index, index=first.to_numpy())
    for r in np.flatnonzero(repeats):
        bad.append((int(r), f"column {col!r}: image {images[r]!r} is also in row {int(first_row[images[r]]) + 1}"))


def metadata_columns(frame: pd.DataFrame, columns: TableColumns
                     ) -> tuple[dict[str, list[Any]], list[tuple[int, str]]]:
    """The metadata columns under their canonical names, plus bad rows ``(row0, reason)``.

    Bad rows: empty image path, an image already named by an earlier row, latitude/longitude that
    is not a number or outside [-90, 90] / [-180, 180], a date that does not parse. ``row0`` is the
    0-based position; messages show it 1-based (:data:`ROW_CONVENTION`).
    """
    bad: list[tuple[int, str]] = []
    if columns.image not in frame.columns:
        raise TableError(f"image column {columns.image!r} not in table columns {list(frame.columns)}")
    images = frame[columns.image].tolist()
    for r, p in enumerate(images):
        if is_missing(p):
            bad.append((r, f"column {columns.image!r}: empty image path"))
    meta: dict[str, list[Any]] = {"image_path": ["" if is_missing(p) else str(p) for p in images]}
    _duplicate_images(meta["image_path"], columns.image, bad)
    for key in ("dataset", "site"):
        col = getattr(columns, key)
        meta[key] = (["" if is_missing(v) else str(v) for v in frame[col].tolist()]
                     if col is not None and col in frame.columns else [""] * len(frame))
    meta["date"] = _date_column(frame, columns.date, bad)
    meta["latitude"] = _float_column(frame, columns.latitude, bad, limit=90.0)
    meta["longitude"] = _float_column(frame, columns.longitude, bad, limit=180.0)
    return meta, bad
