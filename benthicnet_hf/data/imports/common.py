"""Point annotations of any platform → our label table (one row per image).

Each platform reader (:mod:`.squidle`, :mod:`.biigle`, :mod:`.coralnet`) turns its export into a
**points frame**: one row per annotation with the columns of :data:`POINT_COLUMNS` (``media`` is the
platform's image identity, ``image`` the file name the table will hold, ``label`` the platform label,
``aliases`` other names of the same label the mapping may use, ``where`` the export file and row for
messages). :func:`points_to_table` then

1. translates each platform label with a :class:`LabelMapping` (platform label → CATAMI paths, or
   ``IGNORE``); unmapped labels are reported **all at once**, with their counts and example images
   (:class:`UnmappedLabelError`), or skipped and reported (``on_unmapped="skip"``);
2. takes per image the **union of its points' paths** per head (a point on sand and one on a sponge
   make an image with substrate ``Sand`` and biota ``Sponges``);
3. writes, for each head that is **not exhaustive**, a ``<head>_mask`` column listing the nodes that
   are unknown (every node but the positives and their ancestors): a class absent among the points
   is not evidence of absence. By default **biota and colour are not exhaustive**: organisms are
   small and patchy, a taxon no point fell on may well be in the frame (and colour qualifies
   organisms). **Substrate, relief and bedforms are exhaustive**: substrate covers the frame and
   the points sample it systematically, so a substrate no point hit covers at most a small share of
   the image (absent for an image-level label); relief and bedforms are single-choice descriptions
   of the whole frame, so the class an annotator picked rules the others out. Override per head
   with ``exhaustive`` (``--exhaustive``/``--non_exhaustive``), e.g. ``--exhaustive biota`` for a
   survey that scored every organism in the frame.

The table loads with :func:`benthicnet_hf.data.build_dataset` as it is: the mask columns carry the
per-head choice, so no ``exhaustive=`` option is needed at training time.
"""

from __future__ import annotations

import csv
import difflib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ...catami import split_head
from ...hierarchy import Hierarchy, HierarchyError
from ...labels import LabelEncoder
from ..table import DEFAULT_LABEL_COLUMNS, TableError

logger = logging.getLogger(__name__)

POINT_COLUMNS = ("media", "image", "label", "aliases", "dataset", "site", "latitude", "longitude", "depth", "date",
                 "where")
METADATA = ("dataset", "site", "latitude", "longitude", "depth", "date")
#: Heads whose unannotated nodes are known negatives by default (see the module docstring).
EXHAUSTIVE_BY_DEFAULT = frozenset({"substrate", "relief", "bedforms"})
IGNORE = "IGNORE"
UNMAPPED_POLICIES = ("error", "skip")


class UnmappedLabelError(ValueError):
    """Platform labels the mapping does not translate, all at once. ``unmapped``: label → count."""

    def __init__(self, message: str, unmapped: Mapping[str, int]) -> None:
        super().__init__(message)
        self.unmapped = dict(unmapped)


def read_export(path: str | Path, required: Sequence[str], platform: str) -> pd.DataFrame:
    """A platform CSV as text (only empty cells missing), checked for the ``required`` columns.

    Raises:
        TableError: missing file, or columns missing (named, with the file's columns).
    """
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{platform} export {path} does not exist")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise TableError(f"{platform} export {path} is not UTF-8 text ({err.reason} at byte {err.start})") from err
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise TableError(f"{platform} export {path} cannot be read as CSV: {err}") from err
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise TableError(f"{path}: not a {platform} export: column(s) {missing} missing; it has {list(frame.columns)}")
    return frame


def column_or_empty(frame: pd.DataFrame, name: str | None) -> pd.Series:
    """``frame[name]`` as text with "" for empty cells; all "" when the column is absent."""
    if name is None or name not in frame.columns:
        return pd.Series([""] * len(frame), index=frame.index, dtype=object)
    return frame[name].fillna("").astype(str).str.strip()


def where_column(path: str | Path, frame: pd.DataFrame) -> pd.Series:
    """``"export.csv row N"`` per row (1-based data rows, header not counted)."""
    name = Path(path).name
    return pd.Series([f"{name} row {i + 1}" for i in range(len(frame))], index=frame.index, dtype=object)


@dataclass
class LabelMapping:
    """Platform label → ``[(head, node key), ...]`` (empty list = ``IGNORE``: not a CATAMI class).

    Read from a CSV with columns ``label`` and ``catami``: one or more CATAMI paths with their head
    token (``[BIOTA] > Biota > Sponges``), ``;``-separated, or ``IGNORE`` for labels that are no class
    (laser points, "unscorable"). Other columns (counts, notes) are ignored.
    """

    paths: dict[str, list[tuple[str, str]]]
    source: str = "mapping"

    @classmethod
    def read(cls, path: str | Path, hierarchy: Hierarchy) -> "LabelMapping":
        """Read and check a mapping file against ``hierarchy``.

        Raises:
            TableError: missing columns, a duplicated label, an empty ``catami`` cell, or paths that
                are not nodes (all listed, with their mapping rows and the closest nodes).
        """
        path = Path(path)
        if not path.is_file():
            raise TableError(f"mapping file {path} does not exist")
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        missing = [c for c in ("label", "catami") if c not in frame.columns]
        if missing:
            raise TableError(f"mapping {path}: column(s) {missing} missing (expected 'label,catami'); "
                             f"it has {list(frame.columns)}")
        paths: dict[str, list[tuple[str, str]]] = {}
        problems = []
        for r, (label, cell) in enumerate(zip(frame["label"].str.strip(), frame["catami"].str.strip())):
            row = f"row {r + 1}"
            if label in paths:
                problems.append(f"{row}: label {label!r} is mapped twice")
                continue
            if not cell:
                problems.append(f"{row}: label {label!r} has no CATAMI path (write one, or {IGNORE} to drop it)")
                continue
            if cell == IGNORE:
                paths[label] = []
                continue
            nodes = []
            for text in (t.strip() for t in cell.split(";") if t.strip()):
                try:
                    head, node = split_head(text)
                except HierarchyError:
                    problems.append(f"{row}: {text!r} does not start with a head token such as [BIOTA]")
                    continue
                if head not in hierarchy.head_names:
                    problems.append(f"{row}: {text!r}: no head {head!r} (heads: {hierarchy.head_names})")
                elif node not in hierarchy.head(head).index:
                    close = difflib.get_close_matches(node, hierarchy.head(head).nodes, n=2, cutoff=0.6)
                    problems.append(f"{row}: {text!r} is not a {head} node (closest: {close})")
                else:
                    nodes.append((head, node))
            paths[label] = nodes
        if problems:
            raise TableError(f"mapping {path} ({len(problems)} problem(s); rows are 1-based data rows): "
                             + "; ".join(problems))
        return cls(paths, str(path))

    def lookup(self, label: str, aliases: Sequence[str] = ()) -> list[tuple[str, str]] | None:
        """The paths of ``label`` (or of its first mapped alias); None when unmapped."""
        for key in (label, *aliases):
            if key in self.paths:
                return self.paths[key]
        return None


@dataclass
class ImportReport:
    """What an import did: counts per label, for the log and for tests."""

    points: int = 0
    images: int = 0
    unmapped: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)
    labelled_images: dict[str, int] = field(default_factory=dict)
    exhaustive: dict[str, bool] = field(default_factory=dict)

    def summary(self) -> str:
        heads = ", ".join(f"{h} {n} ({'exhaustive' if self.exhaustive[h] else 'absent = unknown'})"
                          for h, n in self.labelled_images.items())
        lines = [f"{self.points} point(s) on {self.images} image(s); labelled images per head: {heads or 'none'}"]
        if self.ignored:
            lines.append(f"ignored by the mapping (IGNORE): {_counts(self.ignored)}")
        if self.unmapped:
            lines.append(f"skipped, not in the mapping: {_counts(self.unmapped)}")
        return "\n".join(lines)


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{label!r} × {n}" for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _unmapped_error(points: pd.DataFrame, unmapped: pd.Series, mapping: LabelMapping) -> UnmappedLabelError:
    counts = points.loc[unmapped, "label"].value_counts()
    lines = []
    for label, n in counts.items():
        images = points.loc[unmapped & (points["label"] == label), "image"].unique()[:3]
        lines.append(f"  {label!r}: {n} point(s), e.g. image(s) {list(images)}")
    return UnmappedLabelError(
        f"{len(counts)} platform label(s) are not in {mapping.source} ({int(unmapped.sum())} point(s)):\n"
        + "\n".join(lines) + f"\nAdd each to the mapping (label,catami) with its CATAMI path(s) or {IGNORE}, or pass "
        "--on_unmapped skip to leave those points out (they are reported).", counts.to_dict())


def _check_metadata(points: pd.DataFrame) -> None:
    """One image, one place: points of an image must agree on its source and site, and coordinates
    must be numbers; every offending image/row is named."""
    problems = []
    for col in ("dataset", "site", "image"):
        n = points.groupby("media", sort=False)[col].nunique()
        for media in n.index[n > 1][:5]:
            values = points.loc[points["media"] == media, col].unique().tolist()
            problems.append(f"image {media!r} has several {col} values {values[:4]}")
    images = points.groupby("image", sort=False)["media"].nunique()
    for image in images.index[images > 1][:5]:
        media = points.loc[points["image"] == image, "media"].unique().tolist()
        problems.append(f"image file {image!r} names different images {media[:4]} (choose another --image_column)")
    for col, limit in (("latitude", 90.0), ("longitude", 180.0), ("depth", np.inf)):
        text = points[col]
        values = pd.to_numeric(text, errors="coerce")
        bad = (values.isna() & (text != "")) | (values.abs() > limit)
        for w, v in zip(points.loc[bad, "where"][:5], text[bad][:5]):
            problems.append(f"{w}: {col} {v!r} is not a number{'' if np.isinf(limit) else f' in [-{limit:g}, {limit:g}]'}")
    if problems:
        raise TableError(f"{len(problems)} metadata problem(s): " + "; ".join(problems))


def points_to_table(points: pd.DataFrame, mapping: LabelMapping, hierarchy: Hierarchy,
                    exhaustive: Mapping[str, bool] | None = None, on_unmapped: str = "error"
                    ) -> tuple[pd.DataFrame, ImportReport]:
    """One table row per image from a points frame (see the module docstring).

    Args:
        points: one row per annotation, columns :data:`POINT_COLUMNS` (text; "" = missing).
        mapping: platform label → CATAMI paths.
        hierarchy: the hierarchy the paths and mask indices refer to (``Hierarchy.catami()``).
        exhaustive: per-head overrides of :data:`EXHAUSTIVE_BY_DEFAULT`.
        on_unmapped: ``"error"`` raises :class:`UnmappedLabelError` listing every unmapped label;
            ``"skip"`` leaves their points out and reports them.

    Returns:
        ``(table, report)``: columns ``image``, the metadata, ``n_points``, one label column per head
        that received a label (BenthicNet names, ``catami_biota``...: ``"; "``-joined paths) and
        ``<head>_mask`` (unknown node indices, JSON lists) for the non-exhaustive ones.
    """
    if on_unmapped not in UNMAPPED_POLICIES:
        raise ValueError(f"on_unmapped must be one of {UNMAPPED_POLICIES}, got {on_unmapped!r}")
    if points.empty:
        raise TableError("the export holds no annotation rows")
    for head in exhaustive or {}:
        hierarchy.head(head)  # KeyError naming the heads
    is_exhaustive = {h: h in EXHAUSTIVE_BY_DEFAULT for h in hierarchy.head_names} | dict(exhaustive or {})
    _check_metadata(points)

    # translate each distinct (label, aliases) once, not each point
    keys = list(zip(points["label"], points["aliases"]))
    translated = {key: mapping.lookup(key[0], key[1]) for key in dict.fromkeys(keys)}
    found = [translated[k] for k in keys]
    unmapped = pd.Series([f is None for f in found], index=points.index)
    report = ImportReport(points=len(points), exhaustive={h: is_exhaustive[h] for h in hierarchy.head_names})
    if unmapped.any():
        error = _unmapped_error(points, unmapped, mapping)
        if on_unmapped == "error":
            raise error
        report.unmapped = error.unmapped
        logger.warning("%s", str(error).splitlines()[0].replace("are not in", "skipped: not in"))
    ignored = pd.Series([f == [] for f in found], index=points.index)
    report.ignored = points.loc[ignored, "label"].value_counts().to_dict()

    per_image = points.groupby("image", sort=False)
    table = per_image[list(METADATA)].first().reset_index()
    table["n_points"] = per_image.size().to_numpy()
    report.images = len(table)
    pairs = pd.DataFrame([(img, head, node) for img, f in zip(points["image"], found) for head, node in (f or [])],
                         columns=["image", "head", "node"]).drop_duplicates()
    order = {h: i for i, h in enumerate(hierarchy.head_names)}
    labels: dict[str, list] = {}
    for head in sorted(pairs["head"].unique(), key=order.get):
        sub = pairs[pairs["head"] == head]
        cells = sub.groupby("image", sort=False)["node"].agg(lambda s: "; ".join(sorted(s)))
        labels[head] = table["image"].map(cells).tolist()
        report.labelled_images[head] = int(cells.size)
    for head, cells in labels.items():
        table[DEFAULT_LABEL_COLUMNS.get(head, f"{head}_labels")] = [c if isinstance(c, str) else "" for c in cells]
    open_heads = [h for h in labels if not is_exhaustive[h]]
    if open_heads:
        encoded = LabelEncoder(hierarchy, exhaustive={h: False for h in open_heads}).encode(
            {h: labels[h] for h in open_heads})
        for head in open_heads:
            unknown = encoded.mask[:, hierarchy.head_slice(head)] == 0
            labelled = [isinstance(c, str) for c in labels[head]]
            table[f"{head}_mask"] = [json.dumps(np.flatnonzero(u).tolist()) if ok else ""
                                     for u, ok in zip(unknown, labelled)]
    return table, report


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write the table as CSV (``.parquet`` → Parquet); the folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".parquet":
        table.to_parquet(path, index=False)
    else:
        table.to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL)
    return path


def write_unmapped_template(counts: Mapping[str, int], path: str | Path) -> Path:
    """A mapping file of the unmapped labels (``label,catami,count``, catami empty) to fill in."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["label", "catami", "count"])
        for label, n in Counter(counts).most_common():
            w.writerow([label, "", n])
    return path
