"""Data layer: BenthicNet-style tables and images → labelled, masked ``datasets`` rows.

- :func:`build_dataset`: one call, table + images → ``DatasetDict`` (via :mod:`.builder`);
  :func:`build_dataset_with_report` also returns what it noticed (NaN label cells, label support).
- :mod:`.label_support`: per head labelled rows / known positive / known negative bits, and the
  guard against heads that cannot be trained (:func:`check_trainable_heads`).
- :mod:`.transforms`: on-the-fly ``pixel_values``/``labels``/``label_mask`` and a collate function.
- :mod:`.export`: Parquet shards, streaming, Hub upload. :mod:`.demo`: the synthetic demo set.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
from datasets.exceptions import DatasetGenerationError

from ..hierarchy import Hierarchy
from ..labels import UnknownLabelError
from .builder import BenthicNetDatasetBuilder, BenthicNetDatasetConfig, hml_features
from .images import ImageLoadError, load_rgb, to_rgb
from .label_matrices import label_matrices
from .progress import bars_on_a_terminal_only
from .label_support import DegenerateHeadError, check_trainable_heads, format_label_support, label_support
from .splits import assign_splits, grouped_split
from .table import LEGACY_LABEL_COLUMNS, BadRowError, TableColumns, TableError, read_table

logger = logging.getLogger(__name__)


def _image_stats(table: str | Path, image_root: str | Path | None, columns: dict | None) -> bytes:
    """``(size, mtime_ns)`` of every image the table names, as bytes (``-1`` for a missing file).

    Cheap (one ``os.stat`` per row), so an edited or fixed image, or a missing one that appears,
    changes the cache key and the row is read again.
    """
    frame, folder = read_table(table)
    col = TableColumns.from_overrides(columns).image
    if col not in frame.columns:
        return b""  # the builder raises the clear error
    root = str(Path(image_root) if image_root else (folder or Path(table).parent))
    stats = np.full((len(frame), 2), -1, dtype=np.int64)
    join, stat = os.path.join, os.stat  # plain strings: Path objects cost more than the stat itself
    for r, rel in enumerate(frame[col].tolist()):
        if not isinstance(rel, str) or not rel:
            continue
        try:
            st = stat(join(root, rel))  # join keeps an absolute rel as it is
        except OSError:
            continue
        stats[r] = (st.st_size, st.st_mtime_ns)
    return stats.tobytes()


def _fingerprint(table: str | Path, image_root: str | Path | None, columns: dict | None = None) -> str:
    """Cache key: changes when the table file (or an image folder's metadata file) changes, or when
    any referenced image's size or modification time does."""
    path = Path(table)
    if path.is_dir():
        path = next((path / n for n in ("metadata.jsonl", "metadata.csv") if (path / n).exists()), path)
    h = hashlib.sha256(str(Path(image_root).resolve() if image_root else "").encode())
    if path.is_file():
        h.update(path.read_bytes())
        h.update(_image_stats(table, image_root, columns))
    return h.hexdigest()[:16]


def nan_label_cells(frame: pd.DataFrame, columns: dict | None = None) -> dict[str, int]:
    """Label columns of a DataFrame → number of NaN/None cells (only columns that have some)."""
    cols = TableColumns.from_overrides(columns)
    names = list(cols.labels.values()) + [n for names in LEGACY_LABEL_COLUMNS.values() for n in names]
    return {c: int(frame[c].isna().sum()) for c in dict.fromkeys(names) if c in frame.columns
            and frame[c].isna().any()}


def _warn_nan_labels(counts: dict[str, int]) -> None:
    if counts:
        logger.warning(
            "DataFrame label column(s) with NaN cells, read as missing heads: %s. pandas.read_csv turns "
            "the text 'None', 'NA', 'N/A', 'null' into NaN by default, and 'None' is a CATAMI bedforms "
            "class: if the frame came from read_csv, re-read it with keep_default_na=False, na_values=[''] "
            "(or pass the CSV path itself).", counts)


def _log_support(ds: datasets.DatasetDict, hierarchy: Hierarchy) -> dict[str, list[dict]]:
    """Per split label support (:func:`label_support`), logged as a table."""
    support = {}
    for split, part in ds.items():
        targets, mask = label_matrices(part, hierarchy)
        support[split] = label_support(targets, mask, hierarchy)
    logger.info("label support per split (rows with a label, known positive and negative bits):\n%s",
                format_label_support(support))
    return support


def build_dataset_with_report(table: str | Path | pd.DataFrame, image_root: str | Path | None = None,
                              hierarchy: Hierarchy | None = None, cache_dir: str | Path | None = None,
                              num_proc: int | None = None,
                              **config: Any) -> tuple[datasets.DatasetDict, dict[str, Any]]:
    """:func:`build_dataset` plus its build report.

    ``num_proc`` processes read, verify and embed the images (``download_and_prepare(num_proc=...)``,
    one shard of ``rows_per_source_shard`` rows at a time); the rows and their order do not depend on it.

    Returns:
        ``(dataset, report)``; ``report`` has ``nan_label_cells`` (DataFrame label column → NaN
        cells), ``label_support`` (split → :func:`label_support` rows) and ``skipped_report`` (the
        skipped-rows file with ``skip_bad``, else None).
    """
    nan_cells: dict[str, int] = {}
    if isinstance(table, pd.DataFrame):
        if cache_dir is None:
            raise ValueError("build_dataset(DataFrame) needs cache_dir to write the table to")
        nan_cells = nan_label_cells(table, config.get("columns"))
        _warn_nan_labels(nan_cells)
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        path = Path(cache_dir) / f"table-{hashlib.sha256(table.to_csv().encode()).hexdigest()[:12]}.csv"
        table.to_csv(path, index=False)
        table = path
    if "group_by" in config:
        config["group_by"] = tuple([config["group_by"]] if isinstance(config["group_by"], str) else config["group_by"])
    builder = BenthicNetDatasetBuilder(
        cache_dir=None if cache_dir is None else str(cache_dir),
        table=str(table),
        image_root=None if image_root is None else str(image_root),
        hierarchy_json=None if hierarchy is None else hierarchy.to_json(),
        table_fingerprint=_fingerprint(table, image_root, config.get("columns")),
        **config,
    )
    try:
        with bars_on_a_terminal_only():
            builder.download_and_prepare(num_proc=num_proc)
    except DatasetGenerationError as err:
        # surface our own error (it names the row and file) instead of datasets' generic wrapper
        cause = err.__cause__
        if isinstance(cause, UnknownLabelError):
            raise UnknownLabelError(str(cause), unknown=cause.unknown) from err
        if isinstance(cause, BadRowError):
            raise BadRowError(cause.rows, source=str(table)) from err
        if isinstance(cause, (ImageLoadError, TableError)):
            raise type(cause)(str(cause)) from err
        raise
    with bars_on_a_terminal_only():
        ds = builder.as_dataset()
    report = {"nan_label_cells": nan_cells,
              "label_support": _log_support(ds, builder.config.hierarchy()),
              "skipped_report": str(builder.config.skipped_report_path()) if config.get("skip_bad") else None}
    return ds, report


def build_dataset(table: str | Path | pd.DataFrame, image_root: str | Path | None = None,
                  hierarchy: Hierarchy | None = None, cache_dir: str | Path | None = None,
                  num_proc: int | None = None, **config: Any) -> datasets.DatasetDict:
    """Build the dataset with :class:`BenthicNetDatasetBuilder` and return all its splits.

    Logs the label support of every split (:func:`label_support`); a DataFrame whose label columns
    hold NaN cells is accepted, with a warning that counts them (see
    :func:`build_dataset_with_report` for both as data).

    Args:
        table: label table path, image folder with ``metadata.jsonl``/``.csv``, or a DataFrame
            (written next to ``cache_dir`` as CSV first).
        image_root: folder the image paths are relative to (default: the table's folder).
        hierarchy: default :meth:`Hierarchy.catami`.
        cache_dir: ``datasets`` cache folder. The cache key covers the table and the size and
            modification time of every referenced image.
        **config: any :class:`BenthicNetDatasetConfig` field (``columns``, ``skip_bad``,
            ``split_fractions``, ``group_by``, ``seed``, ``exhaustive``, ``source_exhaustive`` ...).
    """
    return build_dataset_with_report(table, image_root, hierarchy, cache_dir, num_proc, **config)[0]


__all__ = [
    "BadRowError", "BenthicNetDatasetBuilder", "BenthicNetDatasetConfig", "DegenerateHeadError", "ImageLoadError",
    "TableColumns", "TableError", "assign_splits", "build_dataset", "build_dataset_with_report",
    "check_trainable_heads", "format_label_support", "grouped_split", "hml_features", "label_support",
    "load_rgb", "nan_label_cells", "to_rgb",
]
