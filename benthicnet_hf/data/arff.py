"""The ARFF format of the hierarchical multi-label (HMC) benchmarks: one parser for the library.

Reads the header (numeric, nominal ``{a,b,c}`` and ``hierarchical`` attributes), the ``@DATA`` rows
(features, with ``?`` as NaN) and the class hierarchy of a ``hierarchical`` declaration. Two
declaration forms exist (Clus / C-HMCNN benchmark files):

- **trees** (FunCat, Diatoms, ImCLEF07A): the declaration lists node paths ``01,01/01,01/01/03``;
  a node's parent is its path prefix, top-level nodes hang under an implicit ``root``;
- **DAGs** (Gene Ontology): the declaration lists ``parent/child`` edges starting with
  ``root/GO0003674``; a node may have several parents.

Row labels are ``@``-separated node keys: paths for trees, ids for DAGs. A row's target is its
nodes and all their ancestors.

A declaration may list the same path (or edge) more than once: repeats are dropped, first
occurrence order kept, and the count is logged.

A line is a comment only when it *starts* with ``%`` (after blanks), as the ARFF format says: ``%``
inside an attribute name or a quoted value is data. Values may be quoted with ``'`` or ``"`` (commas
inside quotes are kept). Nominal attributes are one-hot encoded as the C-HMCNN reference does (a
missing or unknown value is all zeros). Splits and dataset folders are the experiments' business
(:mod:`benthicnet_hf.experiments.hmc.arff`).
"""

from __future__ import annotations

import gzip
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..hierarchy import Hierarchy, HierarchyError, Taxonomy

__all__ = [
    "ROOT",
    "ArffFormatError",
    "ArffTable",
    "Attribute",
    "is_dag_declaration",
    "open_text",
    "read_arff",
    "read_declaration",
    "split_row",
    "taxonomy_from_arff",
    "taxonomy_from_declaration",
]

logger = logging.getLogger(__name__)

ROOT = "root"
_DECL = re.compile(r"^\s*@attribute\s+(\S+)\s+hierarchical\s+(\S+)\s*$", re.IGNORECASE)


def open_text(path: str | Path):
    """Open a plain or gzip-compressed text file."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def is_dag_declaration(terms: list[str]) -> bool:
    """GO declarations are edge lists that start from ``root/...``."""
    return any(t.startswith(ROOT + "/") for t in terms)


def taxonomy_from_declaration(spec: str, name: str = "class", kind: str | None = None) -> Taxonomy:
    """A :class:`Taxonomy` from the comma-separated term list of a ``hierarchical`` attribute.

    Args:
        spec: the declaration's term list, e.g. ``"01,01/01,01/01/03"`` or
            ``"root/GO0003674,GO0003674/GO0005488"``.
        kind: ``"tree"`` or ``"dag"``; detected from the terms when None.
    """
    listed = [t.strip() for t in spec.split(",") if t.strip()]
    if not listed:
        raise HierarchyError(f"hierarchical attribute {name!r} declares no classes")
    terms = list(dict.fromkeys(listed))  # repeats are legal: dedupe, keep the first order
    if len(terms) < len(listed):
        logger.info("hierarchical attribute %r: %d repeated class term(s) ignored", name, len(listed) - len(terms))
    kind = kind or ("dag" if is_dag_declaration(terms) else "tree")
    if kind == "dag":
        edges = []
        for t in terms:
            parts = t.split("/")
            if len(parts) != 2 or not all(parts):
                raise HierarchyError(f"DAG edge {t!r} of {name!r} is not 'parent/child'")
            edges.append((parts[0], parts[1]))
        return Taxonomy.from_edges(name, edges)
    nodes: dict[str, int] = {ROOT: 0}
    parents: list[tuple[int, ...]] = [()]
    for t in terms:
        parts = t.split("/")
        if not all(parts):
            raise HierarchyError(f"class path {t!r} of {name!r} has an empty component")
        for d in range(1, len(parts) + 1):
            key = "/".join(parts[:d])
            if key not in nodes:
                nodes[key] = len(nodes)
                parents.append((nodes["/".join(parts[: d - 1])] if d > 1 else 0,))
    return Taxonomy(name=name, nodes=tuple(nodes), parents=tuple(parents), kind="tree", sep="/")


def read_declaration(path: str | Path) -> tuple[str, str]:
    """``(attribute name, term list)`` of the hierarchical attribute in an ARFF file's header."""
    with open_text(path) as f:
        for line in f:
            m = _DECL.match(line)
            if m:
                return m.group(1), m.group(2)
            if line.strip().lower().startswith("@data"):
                break
    raise HierarchyError(f"{path}: no '@ATTRIBUTE ... hierarchical ...' declaration in the header")


def taxonomy_from_arff(path: str | Path, name: str | None = None) -> Taxonomy:
    """The class hierarchy declared in an ARFF file (plain or ``.gz``)."""
    attr, spec = read_declaration(path)
    return taxonomy_from_declaration(spec, name=name or attr)


class ArffFormatError(ValueError):
    """Malformed ARFF input; the message names the file and line."""


@dataclass(frozen=True)
class Attribute:
    name: str
    kind: str  #: "numeric" | "nominal" | "hierarchical"
    values: tuple[str, ...] = ()  #: nominal categories, or the hierarchical declaration (one item)

    @property
    def width(self) -> int:
        """Number of feature columns: 1 for numeric, one per category for nominal."""
        return len(self.values) if self.kind == "nominal" else 1


@dataclass
class ArffTable:
    """One split.

    Attributes:
        features: ``(rows, F)`` float64, NaN where a numeric value is missing.
        targets: ``(rows, N)`` uint8 over ``hierarchy``'s global layout (ancestors included).
        attributes: the feature attributes (class attribute excluded).
        declaration: the class attribute's term list (to check splits share one hierarchy).
    """

    path: Path
    features: np.ndarray
    targets: np.ndarray
    attributes: tuple[Attribute, ...]
    declaration: str


def _parse_attribute(line: str, path: Path, lineno: int) -> Attribute:
    body = line.strip()[len("@attribute") :].strip()
    if body.startswith(("'", '"')):  # quoted names may contain spaces
        q = body[0]
        end = body.find(q, 1)
        if end < 0:
            raise ArffFormatError(f"{path}:{lineno}: unterminated quoted attribute name")
        name, rest = body[1:end], body[end + 1 :].strip()
    else:
        parts = body.split(None, 1)
        if len(parts) != 2:
            raise ArffFormatError(f"{path}:{lineno}: attribute line without a type: {line.strip()!r}")
        name, rest = parts
    low = rest.lower()
    if low.startswith("hierarchical"):
        return Attribute(name, "hierarchical", (rest[len("hierarchical") :].strip(),))
    if low in ("numeric", "real", "integer"):
        return Attribute(name, "numeric")
    if rest.startswith("{") and rest.endswith("}"):
        cats = tuple(c.strip("'\"") for c in split_row(rest[1:-1]))
        return Attribute(name, "nominal", cats)
    raise ArffFormatError(f"{path}:{lineno}: attribute {name!r} has unsupported type {rest!r}")


def _read_lines(path: Path) -> tuple[list[Attribute], list[tuple[int, str]]]:
    attrs: list[Attribute] = []
    rows: list[tuple[int, str]] = []
    in_data = False
    with open_text(path) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("%"):  # '%' elsewhere is data (names, quoted values)
                continue
            if in_data:
                rows.append((lineno, line))
            elif line.lower().startswith("@attribute"):
                attrs.append(_parse_attribute(line, path, lineno))
            elif line.lower().startswith("@data"):
                in_data = True
    if not in_data:
        raise ArffFormatError(f"{path}: no @DATA section")
    return attrs, rows


def split_row(line: str) -> list[str]:
    """The comma-separated cells of a data row, stripped; quoted cells (``'...'`` or ``"..."``) may
    hold commas and keep their quotes (nominal lookups strip them)."""
    if "'" not in line and '"' not in line:  # the common, numeric case: no scanning
        return [x.strip() for x in line.split(",")]
    cells, current, quote = [], [], ""
    for ch in line:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == ",":
            cells.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    cells.append("".join(current).strip())
    return cells


def _features(attrs: list[Attribute], cells: np.ndarray, linenos: np.ndarray, path: Path) -> np.ndarray:
    """``(rows, F)`` float64 from the ``(rows, attrs)`` string cells."""
    cols: list[np.ndarray] = []
    for j, a in enumerate(attrs):
        col = cells[:, j]
        if a.kind == "numeric":
            missing = col == "?"
            try:
                cols.append(np.where(missing, "nan", col).astype(np.float64)[:, None])
            except ValueError:
                bad = next(i for i, c in enumerate(col) if c != "?" and not _is_float(c))
                raise ArffFormatError(
                    f"{path}:{linenos[bad]}: attribute {a.name!r} expects a number, got {col[bad]!r}"
                ) from None
        else:  # nominal: one-hot; '?' and unknown categories stay all zeros like the reference
            lookup = {c: i for i, c in enumerate(a.values)}
            idx = np.array([lookup.get(c.strip("'\""), -1) for c in col])
            onehot = np.zeros((len(col), len(a.values)))
            rows = np.flatnonzero(idx >= 0)
            onehot[rows, idx[rows]] = 1.0
            cols.append(onehot)
    return np.concatenate(cols, axis=1) if cols else np.zeros((len(cells), 0))


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _targets(labels: list[str], linenos: np.ndarray, hierarchy: Hierarchy, path: Path) -> np.ndarray:
    """``(rows, N)`` uint8: each label's node and all its ancestors."""
    head = hierarchy.heads[0]
    index = head.index
    rows, nodes = [], []
    for r, cell in enumerate(labels):
        for key in cell.split("@"):
            key = key.strip()
            if key not in index:
                raise ArffFormatError(
                    f"{path}:{linenos[r]}: class {key!r} is not declared in the hierarchical attribute"
                )
            rows.append(r)
            nodes.append(index[key])
    anc = hierarchy.ancestors_padded[np.asarray(nodes, dtype=np.int64)]  # (K, A), -1 padded
    rr = np.repeat(np.asarray(rows, dtype=np.int64), anc.shape[1])
    aa = anc.reshape(-1)
    keep = aa >= 0
    out = np.zeros((len(labels), hierarchy.num_nodes), dtype=np.uint8)
    out[rr[keep], aa[keep]] = 1
    return out


def read_arff(path: str | Path, hierarchy: Hierarchy | None = None) -> tuple[ArffTable, Hierarchy]:
    """Read one split; builds the hierarchy from its declaration unless one is given.

    Returns:
        the table and the hierarchy its targets are laid out on (one head named after the class
        attribute; trees carry an explicit ``root`` node).
    """
    path = Path(path)
    attrs, rows = _read_lines(path)
    cls = [i for i, a in enumerate(attrs) if a.kind == "hierarchical"]
    if len(cls) != 1:
        raise ArffFormatError(f"{path}: expected one hierarchical class attribute, found {len(cls)}")
    c = cls[0]
    if hierarchy is None:
        hierarchy = Hierarchy((taxonomy_from_declaration(attrs[c].values[0], name=attrs[c].name),))
    linenos = np.array([n for n, _ in rows])
    split = []
    for n, line in rows:
        if line.startswith("{"):
            raise ArffFormatError(f"{path}:{n}: sparse ARFF rows are not supported")
        cells = split_row(line)
        if len(cells) != len(attrs):
            raise ArffFormatError(f"{path}:{n}: {len(cells)} values, expected {len(attrs)} attributes")
        split.append(cells)
    cells = np.array(split, dtype=object).reshape(len(split), len(attrs)).astype(str)
    feat_attrs = [a for i, a in enumerate(attrs) if i != c]
    feat_cells = np.delete(cells, c, axis=1)
    features = _features(feat_attrs, feat_cells, linenos, path)
    targets = _targets(list(cells[:, c]), linenos, hierarchy, path)
    return ArffTable(path, features, targets, tuple(feat_attrs), attrs[c].values[0]), hierarchy
