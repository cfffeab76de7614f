"""CATAMI label paths: parsing ``[HEAD] > A > B`` lines into a :class:`Hierarchy`.

The CATAMI scheme (Collaborative and Automated Tools for Analysis of Marine Imagery) is a public
standard. The package ships its own copy as ``schemes/catami.json`` (see
:meth:`Hierarchy.catami`); this module builds it from a paths file such as BenthicNet's
``catami_ex.csv``::

    python -m benthicnet_hf.catami path/to/catami_ex.csv --out benthicnet_hf/schemes/catami.json
"""

from __future__ import annotations

import argparse
import csv
import logging
import re
from pathlib import Path
from typing import Iterable, Sequence

from .hierarchy import Taxonomy, Hierarchy, HierarchyError, split_path

logger = logging.getLogger(__name__)

SEP = " > "
HEAD_TOKEN = re.compile(r"^\s*\[([^\]]+)\]\s*(?:>\s+)?(.*)$")

#: Default exhaustive policy of the CATAMI heads: every head, biota too, as in the BenthicNet authors'
#: code (all nodes known except below a label cut short and whole missing heads). A survey that lists
#: only some organisms opts out per head or per source (``exhaustive=``, ``source_exhaustive=``).
CATAMI_EXHAUSTIVE = {"biota": True, "substrate": True, "relief": True, "bedforms": True, "colour": True}

#: The colour qualifier classes of the flat colour head (14 classes).
CATAMI_COLOURS = (
    "Black", "Blue", "Brown", "Cream", "Green", "Grey", "Orange",
    "Pink", "Purple", "Red", "Translucent", "White", "Yellow", "Multicoloured",
)

#: Taxonomy order of the shipped scheme.
CATAMI_HEADS = ("biota", "substrate", "relief", "bedforms")


def normalise_path(path: str, sep: str = SEP) -> str:
    """Collapse whitespace around separators: ``"A>B >  C"`` → ``"A > B > C"``."""
    return sep.join(split_path(str(path), sep))


def split_head(line: str) -> tuple[str, str]:
    """``"[SUBSTRATE] > Substrate > Sand"`` → ``("substrate", "Substrate > Sand")``."""
    m = HEAD_TOKEN.match(line)
    if not m:
        raise HierarchyError(f"label path {line!r} does not start with a [HEAD] token")
    return m.group(1).strip().lower(), normalise_path(m.group(2))


def read_paths_file(path: str | Path) -> list[str]:
    """The label paths of a one-column CSV (header optional, trailing commas tolerated)."""
    out = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        for row in csv.reader(f):
            cells = [c for c in row if c.strip()]
            if not cells:
                continue
            if not cells[0].lstrip().startswith("["):
                continue  # header such as "catami" or "catami,aphia_id"
            out.append(cells[0].strip())
    if not out:
        raise HierarchyError(f"{path}: no [HEAD] > ... label paths found")
    return out


def hierarchy_from_paths(
    lines: Iterable[str],
    heads: Sequence[str] | None = None,
    exhaustive: dict[str, bool] | None = None,
    duplicates: str = "error",
    colours: Sequence[str] | None = None,
) -> Hierarchy:
    """Build a hierarchy from ``[HEAD] > A > B`` lines, one tree head per bracketed token.

    Args:
        lines: label paths.
        heads: head order (default: order of first appearance); heads named here but absent from
            ``lines`` are an error (an empty head).
        exhaustive: per-head default policy (default :data:`CATAMI_EXHAUSTIVE`, else True).
        duplicates: ``"error"`` (a repeated path is an error naming it) or ``"merge"`` (repeats are
            merged and logged as a warning).
        colours: if given, a flat ``colour`` head with these classes is appended.
    """
    if duplicates not in ("error", "merge"):
        raise ValueError(f"duplicates must be 'error' or 'merge', got {duplicates!r}")
    exhaustive = {**CATAMI_EXHAUSTIVE, **(exhaustive or {})}
    per_head: dict[str, list[str]] = {}
    seen: dict[tuple[str, str], int] = {}
    repeats = []
    for i, line in enumerate(lines):
        name, path = split_head(line)
        if not path:
            raise HierarchyError(f"line {i}: {line!r} names head [{name.upper()}] but no path")
        if (name, path) in seen:
            repeats.append(f"{line!r} (lines {seen[name, path]} and {i})")
            continue
        seen[name, path] = i
        per_head.setdefault(name, []).append(path)
    if repeats:
        if duplicates == "error":
            raise HierarchyError(
                f"duplicate path(s): {'; '.join(repeats)} (pass duplicates='merge' to merge them)"
            )
        logger.warning("merged %d duplicate path(s): %s", len(repeats), "; ".join(repeats))
    order = list(heads) if heads is not None else list(per_head)
    empty = [h for h in order if h not in per_head]
    if empty:
        raise HierarchyError(f"head(s) {empty} have no paths (empty head)")
    out = [Taxonomy.from_paths(h, per_head[h], sep=SEP, exhaustive=exhaustive.get(h, True)) for h in order]
    if colours:
        out.append(Taxonomy.flat("colour", colours, exhaustive=exhaustive.get("colour", True)))
    return Hierarchy(tuple(out))


def hierarchy_from_catami_csv(path: str | Path, duplicates: str = "error", **kwargs) -> Hierarchy:
    """:func:`hierarchy_from_paths` on a paths file such as ``catami_ex.csv``."""
    return hierarchy_from_paths(read_paths_file(path), duplicates=duplicates, **kwargs)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Build the shipped CATAMI scheme JSON from a paths file.")
    ap.add_argument("paths_csv")
    ap.add_argument("--out", default=str(Path(__file__).with_name("schemes") / "catami.json"))
    args = ap.parse_args(argv)
    h = hierarchy_from_catami_csv(
        args.paths_csv, duplicates="merge", heads=CATAMI_HEADS, colours=CATAMI_COLOURS
    )
    h.to_json(args.out)
    print(h.summary())


if __name__ == "__main__":
    main()
