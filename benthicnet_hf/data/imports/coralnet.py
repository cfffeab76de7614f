"""CoralNet annotation exports (+ the source's labelset) → points frame (:mod:`.common`).

Format followed (CoralNet help, "Export" in the image-browse actions,
https://coralnet.ucsd.edu/pages/help/; column names as asserted by CoralNet's export tests,
``project/export/tests/test_annotations.py``): one row per point,
``Name, Row, Column, Label`` plus optional column sets: ``Date, Aux1..Aux5`` (aux columns carry the
source's own names, e.g. ``Site``), ``Height (cm), Latitude, Longitude, Depth, Camera, ...``,
``Annotator, Date annotated``, ``Machine suggestion N, Machine confidence N``. ``Label`` is the
source's **short code**. The labelset export is ``Label ID,Short Code`` (global label id, the
source's code); a ``Name`` column, as shown on the source's labelset page, may be added.

The mapping may be keyed by the short code, the global ``Label ID`` (portable across sources) or
the ``Name``: the first that the mapping knows is used. With a labelset, a code that is not in it is
an error (the export and the labelset do not belong together). ``site`` is ``Aux1`` unless
``site_column`` names another column; depth keeps the number of values such as ``"10m"``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..table import TableError
from .common import column_or_empty, read_export, where_column

PLATFORM = "CoralNet"
_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*m?\s*$")


def read_labelset(path: str | Path) -> dict[str, tuple[str, ...]]:
    """Short code → its other keys (``Label ID`` and, when present, ``Name``)."""
    frame = read_export(path, ["Label ID", "Short Code"], "CoralNet labelset")
    names = column_or_empty(frame, "Name")
    return {code: tuple(k for k in (label_id, name) if k)
            for code, label_id, name in zip(column_or_empty(frame, "Short Code"),
                                            column_or_empty(frame, "Label ID"), names)}


def _depth(value: str) -> str:
    m = _NUMBER.match(value)
    return m.group(1) if m else value


def read_points(paths: Sequence[str | Path], labelset: str | Path | None = None, label_column: str | None = None,
                image_column: str | None = None, site_column: str | None = None, source: str | None = None
                ) -> pd.DataFrame:
    """The points of one or more CoralNet annotation exports (see the module docstring)."""
    codes = read_labelset(labelset) if labelset else None
    label_col = label_column or "Label"
    frames = []
    for path in paths:
        frame = read_export(path, ["Name", "Row", "Column", label_col], PLATFORM)
        labels = column_or_empty(frame, label_col)
        if codes is not None:
            foreign = labels[~labels.isin(list(codes))].value_counts()
            if len(foreign):
                raise TableError(f"{path}: label code(s) not in the labelset {labelset}: "
                                 + ", ".join(f"{c!r} × {n}" for c, n in foreign.items()))
        frames.append(pd.DataFrame({
            "media": column_or_empty(frame, "Name"),
            "image": column_or_empty(frame, image_column or "Name"),
            "label": labels,
            "aliases": [codes.get(c, ()) for c in labels] if codes else [()] * len(frame),
            "dataset": source or Path(path).stem,
            "site": column_or_empty(frame, site_column or "Aux1"),
            "latitude": column_or_empty(frame, "Latitude"),
            "longitude": column_or_empty(frame, "Longitude"),
            "depth": column_or_empty(frame, "Depth").map(_depth),
            "date": column_or_empty(frame, "Date"),
            "where": where_column(path, frame),
        }))
    return pd.concat(frames, ignore_index=True)
