"""A label table as the input of ``benthicnet-hf predict --table``, and the prediction file.

The table (CSV/TSV/JSONL/Parquet, read like the builder reads it) names one image per row; every
column that is not a label or mask column (site, latitude, longitude, date, depth, n_points, ...) is
**metadata** and is carried into the prediction rows, so predictions keep their place and time. A
missing image is an error naming its row before anything is predicted. The predictions are written
as CSV, or Parquet when the file name ends in ``.parquet`` (scores as floats, AphiaIDs as integers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..labels import is_missing
from .table import DEFAULT_LABEL_COLUMNS, LEGACY_LABEL_COLUMNS, ROW_CONVENTION, TableError, read_table


def label_and_mask_columns(head_names: Sequence[str]) -> set[str]:
    """Column names the table reader treats as labels or masks of these heads."""
    names: set[str] = set()
    for head in head_names:
        names |= {DEFAULT_LABEL_COLUMNS.get(head, ""), f"{head}_mask", f"{head.capitalize()} Mask",
                  *LEGACY_LABEL_COLUMNS.get(head, ())}
    return names - {""}


def table_images(table: str | Path, head_names: Sequence[str], image_root: str | Path | None = None,
                 image_column: str = "image") -> tuple[list[Path], pd.DataFrame]:
    """The image files of a table (in row order) and its metadata columns.

    Args:
        table: the label table (or an image folder with ``metadata.jsonl``/``metadata.csv``).
        head_names: the model's heads, whose label/mask columns are not metadata.
        image_root: folder the image paths are relative to (default: the table's folder).
        image_column: the column of image paths.

    Raises:
        TableError: no image column, or rows with an empty or missing image (all named, 1-based
            data rows).
    """
    frame, folder = read_table(table)
    if image_column not in frame.columns:
        raise TableError(f"{table}: no image column {image_column!r} (use --image_column); "
                         f"columns are {list(frame.columns)}")
    root = Path(image_root) if image_root else (folder or Path(table).parent)
    files, missing = [], []
    for r, rel in enumerate(frame[image_column].tolist()):
        if is_missing(rel):
            missing.append(f"row {r + 1}: empty {image_column!r} cell")
            files.append(Path())
            continue
        path = Path(str(rel)) if Path(str(rel)).is_absolute() else root / str(rel)
        files.append(path)
        if not path.is_file():
            missing.append(f"row {r + 1}: {path} does not exist")
    if missing:
        shown = "; ".join(missing[:10]) + (f" (and {len(missing) - 10} more)" if len(missing) > 10 else "")
        raise TableError(f"{table}: {len(missing)} row(s) without an image ({ROW_CONVENTION}): {shown}. "
                         "Check --image_root (default: the table's folder).")
    drop = label_and_mask_columns(head_names)
    meta = frame[[c for c in frame.columns if c not in drop]].reset_index(drop=True)
    return files, meta


def join_metadata(meta: pd.DataFrame, rows: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    """Metadata columns first, then the prediction columns (``image`` is the table's own column).

    Raises:
        TableError: a metadata column with the name of a prediction column.
    """
    predicted = [c for c in columns if c != "image"]
    clash = sorted(set(meta.columns) & set(predicted))
    if clash:
        raise TableError(f"the table's column(s) {clash} have the names of prediction columns; rename them")
    pred = pd.DataFrame(rows, columns=list(columns)).drop(columns=["image"])
    return pd.concat([meta.reset_index(drop=True), pred.reset_index(drop=True)], axis=1)


def write_predictions(frame: pd.DataFrame, path: str | Path) -> Path:
    """CSV, or Parquet for ``*.parquet`` (scores/uncertainties float, AphiaIDs nullable integers,
    metadata columns numeric where every value is a number)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() != ".parquet":
        frame.to_csv(path, index=False)
        return path
    out = frame.copy()
    for col in out.columns:
        text = out[col].where(out[col].astype(str) != "")
        if col.endswith(("_score", "_uncertainty")):
            out[col] = pd.to_numeric(text).astype(float)
        elif col.endswith("_aphia_id"):
            out[col] = pd.to_numeric(text).astype("Int64")
        elif out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            numbers = pd.to_numeric(text, errors="coerce")
            if text.notna().any() and numbers.notna().sum() == text.notna().sum():
                out[col] = numbers
    out.to_parquet(path, index=False)
    return path
