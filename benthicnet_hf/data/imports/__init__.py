"""Annotation-platform exports → our label table (``benthicnet-hf import``).

``import_exports("squidle", ["export.csv"], "map.csv")`` reads SQUIDLE+ (:mod:`.squidle`), BIIGLE
(:mod:`.biigle`) or CoralNet (:mod:`.coralnet`) exports into one row per annotation, then
:func:`.common.points_to_table` maps labels to CATAMI paths and makes one table row per image (union
of its points' paths, per-head ``<head>_mask`` columns where absence among points is not evidence of
absence). The table loads with :func:`benthicnet_hf.data.build_dataset`. See ``docs/imports.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from ...hierarchy import Hierarchy
from . import biigle, coralnet, squidle
from .common import (EXHAUSTIVE_BY_DEFAULT, IGNORE, ImportReport, LabelMapping, UnmappedLabelError,
                     points_to_table, write_table, write_unmapped_template)

FORMATS = ("squidle", "biigle", "coralnet")


def read_points(fmt: str, paths: Sequence[str | Path], labelset: str | Path | None = None,
                **columns: str | None) -> pd.DataFrame:
    """The points frame of ``paths`` in platform format ``fmt`` (``label_column``, ``image_column``,
    ``site_column``, ``source`` override the format's defaults)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {FORMATS}")
    if labelset is not None and fmt != "coralnet":
        raise ValueError("--labelset is CoralNet's labelset export; the other formats name their labels")
    if fmt == "coralnet":
        return coralnet.read_points(paths, labelset=labelset, **columns)
    return (squidle if fmt == "squidle" else biigle).read_points(paths, **columns)


def import_exports(fmt: str, paths: Sequence[str | Path], mapping: str | Path, hierarchy: Hierarchy | None = None,
                   exhaustive: Mapping[str, bool] | None = None, on_unmapped: str = "error",
                   labelset: str | Path | None = None, **columns: str | None) -> tuple[pd.DataFrame, ImportReport]:
    """Read exports, map their labels and build the table (see :func:`.common.points_to_table`)."""
    hierarchy = hierarchy or Hierarchy.catami()
    label_map = LabelMapping.read(mapping, hierarchy)
    points = read_points(fmt, paths, labelset=labelset, **columns)
    return points_to_table(points, label_map, hierarchy, exhaustive=exhaustive, on_unmapped=on_unmapped)


__all__ = ["EXHAUSTIVE_BY_DEFAULT", "FORMATS", "IGNORE", "ImportReport", "LabelMapping", "UnmappedLabelError",
           "import_exports", "points_to_table", "read_points", "write_table", "write_unmapped_template"]
