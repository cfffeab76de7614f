"""Data layer: BenthicNet-style tables and images → labelled, masked ``datasets`` rows.

- :func:`build_dataset`: one call, table + images → ``DatasetDict`` (via :mod:`.builder`).
- :mod:`.transforms`: on-the-fly ``pixel_values``/``labels``/``label_mask`` and a collate function.
- :mod:`.export`: Parquet shards, streaming, Hub upload. :mod:`.demo`: the synthetic demo set.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
from datasets.exceptions import DatasetGenerationError

from ..hierarchy import Hierarchy
from ..labels import UnknownLabelError
from .builder import BenthicNetDatasetBuilder, BenthicNetDatasetConfig, hml_features
from .images import ImageLoadError, load_rgb, to_rgb
from .splits import assign_splits, grouped_split
from .table import BadRowError, TableColumns, TableError


def _fingerprint(table: str | Path, image_root: str | Path | None) -> str:
    """Changes when the table file (or metadata file of an image folder) changes."""
    path = Path(table)
    if path.is_dir():
        path = next((path / n for n in ("metadata.jsonl", "metadata.csv") if (path / n).exists()), path)
    h = hashlib.sha256(str(Path(image_root).resolve() if image_root else "").encode())
    if path.is_file():
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def build_dataset(table: str | Path | pd.DataFrame, image_root: str | Path | None = None,
                  hierarchy: Hierarchy | None = None, cache_dir: str | Path | None = None,
                  **config: Any) -> datasets.DatasetDict:
    """Build the dataset with :class:`BenthicNetDatasetBuilder` and return all its splits.

    Args:
        table: label table path, image folder with ``metadata.jsonl``/``.csv``, or a DataFrame
            (written next to ``cache_dir`` as CSV first).
        image_root: folder the image paths are relative to (default: the table's folder).
        hierarchy: default :meth:`Hierarchy.catami`.
        cache_dir: ``datasets`` cache folder.
        **config: any :class:`BenthicNetDatasetConfig` field (``columns``, ``skip_bad``,
            ``split_fractions``, ``group_by``, ``seed``, ``exhaustive``, ``source_exhaustive`` ...).
    """
    if isinstance(table, pd.DataFrame):
        if cache_dir is None:
            raise ValueError("build_dataset(DataFrame) needs cache_dir to write the table to")
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
        table_fingerprint=_fingerprint(table, image_root),
        **config,
    )
    try:
        builder.download_and_prepare()
    except DatasetGenerationError as err:
        # surface our own error (it names the row and file) instead of datasets' generic wrapper
        if isinstance(err.__cause__, (ImageLoadError, BadRowError, UnknownLabelError)):
            raise type(err.__cause__)(str(err.__cause__)) from err
        raise
    return builder.as_dataset()


__all__ = [
    "BadRowError", "BenthicNetDatasetBuilder", "BenthicNetDatasetConfig", "ImageLoadError", "TableColumns",
    "TableError", "assign_splits", "build_dataset", "grouped_split", "hml_features", "load_rgb", "to_rgb",
]
