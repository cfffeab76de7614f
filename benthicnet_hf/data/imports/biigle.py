"""BIIGLE CSV reports → points frame (:mod:`.common`).

Formats followed (BIIGLE manual, "Reports schema", https://biigle.de/manual/tutorials/reports/reports-schema;
columns as written by ``biigle/core`` ``app/Services/Reports/Volumes/ImageAnnotations/CsvReportGenerator.php``
and ``.../ImageLabels/CsvReportGenerator.php``):

- CSV image **annotation** report: ``annotation_label_id, label_id, label_name, label_hierarchy,
  user_id, firstname, lastname, image_id, filename, image_longitude, image_latitude, shape_id,
  shape_name, points, attributes, annotation_id, created_at`` (one row per label of an annotation;
  any shape: point, circle, rectangle, polygon... each says the label is in the image);
- CSV image **label** report: ``image_label_id, image_id, filename, longitude, latitude, user_id,
  firstname, lastname, label_id, label_name, label_hierarchy, created_at`` (whole-image labels).

``label_hierarchy`` is the label's path in its label tree, ``" > "``-joined (``Animalia > Annelida >
Polychaeta``): the mapping key. A report is per volume: ``dataset`` is the file's stem unless
``source`` is given. Depth is ``-gps_altitude`` from the image ``attributes`` (``metadata``) when
present; ``created_at`` is when the label was made, not when the image was taken, so no date.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from .common import column_or_empty, read_export, where_column

PLATFORM = "BIIGLE"
LABEL_COLUMN = "label_hierarchy"


def _depth(attributes: str) -> str:
    """``-gps_altitude`` of a BIIGLE image ``attrs`` JSON (metadata), else ""."""
    try:
        meta = json.loads(attributes).get("metadata") or {}
        alt = meta.get("gps_altitude")
    except (json.JSONDecodeError, AttributeError):
        return ""
    if alt in (None, ""):
        return ""
    try:
        return f"{-float(alt):g}"
    except (TypeError, ValueError):
        return str(alt)  # reported with its row as "not a number" by the metadata check


def read_points(paths: Sequence[str | Path], label_column: str | None = None, image_column: str | None = None,
                site_column: str | None = None, source: str | None = None) -> pd.DataFrame:
    """The annotations of one or more BIIGLE CSV reports (annotation or image-label reports)."""
    label_col = label_column or LABEL_COLUMN
    frames = []
    for path in paths:
        frame = read_export(path, ["filename", "image_id", label_col], PLATFORM)
        lon = "image_longitude" if "image_longitude" in frame.columns else "longitude"
        lat = "image_latitude" if "image_latitude" in frame.columns else "latitude"
        frames.append(pd.DataFrame({
            "media": column_or_empty(frame, "image_id"),
            "image": column_or_empty(frame, image_column or "filename"),
            "label": column_or_empty(frame, label_col),
            # label_name too, for mappings keyed by the plain name
            "aliases": [(n,) for n in column_or_empty(frame, "label_name")],
            "dataset": source or Path(path).stem,
            "site": column_or_empty(frame, site_column),
            "latitude": column_or_empty(frame, lat),
            "longitude": column_or_empty(frame, lon),
            "depth": column_or_empty(frame, "attributes").map(_depth),
            "date": "",
            "where": where_column(path, frame),
        }))
    return pd.concat(frames, ignore_index=True)
