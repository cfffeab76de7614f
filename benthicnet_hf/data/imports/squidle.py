"""SQUIDLE+ annotation-set exports → points frame (:mod:`.common`).

Format followed: the SQUIDLE+ API export ``GET /api/annotation_set/<id>/export?template=dataframe.csv``
with ``include_columns=[...]`` and the ``json_normalize`` file operation, which flattens nested fields
into dotted column names (SQUIDLE+ API help, https://squidle.org/api/help, "annotation_set export").
One row per point annotation: ``label.id``, ``label.uuid``, ``label.name``, ``label.lineage_names``
(the label's path in its scheme, ``" > "``-joined, e.g. ``Physical > Substrate > Unconsolidated
(soft) > Sand / mud (<2mm)``), optionally ``label.translated.*`` (the label translated into a target
scheme), ``point.id``, ``point.x``, ``point.y`` (empty for whole-frame labels), ``point.media.key``,
``point.media.path_best``, ``point.media.deployment.key``, ``point.media.deployment.campaign.key``,
``point.pose.lat``, ``point.pose.lon``, ``point.pose.dep``, ``point.pose.timestamp``, ``tag_names``,
``comment``, ``needs_review``, ``likelihood``, ``updated_at``.

Mapped: the image is the file name of ``point.media.path_best`` (where it was downloaded; else
``point.media.key``), the label is ``label.lineage_names`` (unique, unlike ``label.name``: "Colonial"
is under two ascidian branches), ``dataset`` the campaign key, ``site`` the deployment key, depth
``point.pose.dep`` (m), date ``point.pose.timestamp``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from .common import column_or_empty, read_export, where_column

PLATFORM = "SQUIDLE+"
LABEL_COLUMN = "label.lineage_names"


def _file_name(value: str) -> str:
    """The last path part of a URL or path (query string dropped)."""
    return value.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] if value else ""


def read_points(paths: Sequence[str | Path], label_column: str | None = None, image_column: str | None = None,
                site_column: str | None = None, source: str | None = None) -> pd.DataFrame:
    """The points of one or more SQUIDLE+ exports (see the module docstring for the columns used)."""
    label_col = label_column or LABEL_COLUMN
    frames = []
    for path in paths:
        frame = read_export(path, ["point.media.key", label_col], PLATFORM)
        if image_column:
            image = column_or_empty(frame, image_column).map(_file_name)
        else:
            best = column_or_empty(frame, "point.media.path_best").map(_file_name)
            image = best.where(best != "", column_or_empty(frame, "point.media.key"))
        date = column_or_empty(frame, "point.pose.timestamp")
        frames.append(pd.DataFrame({
            "media": column_or_empty(frame, "point.media.key"),
            "image": image,
            "label": column_or_empty(frame, label_col),
            "aliases": [()] * len(frame),
            "dataset": source or column_or_empty(frame, "point.media.deployment.campaign.key"),
            "site": column_or_empty(frame, site_column or "point.media.deployment.key"),
            "latitude": column_or_empty(frame, "point.pose.lat"),
            "longitude": column_or_empty(frame, "point.pose.lon"),
            "depth": column_or_empty(frame, "point.pose.dep"),
            "date": date.where(date != "", column_or_empty(frame, "point.media.timestamp_start")),
            "where": where_column(path, frame),
        }))
    return pd.concat(frames, ignore_index=True)
