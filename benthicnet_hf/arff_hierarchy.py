"""Hierarchies from ARFF ``hierarchical`` class declarations (the HMC benchmark format).

Two forms exist (Clus / C-HMCNN benchmark files):

- **trees** (FunCat, Diatoms, ImCLEF07A): the declaration lists node paths ``01,01/01,01/01/03``;
  a node's parent is its path prefix, top-level nodes hang under an implicit ``root``;
- **DAGs** (Gene Ontology): the declaration lists ``parent/child`` edges starting with
  ``root/GO0003674``; a node may have several parents.

Row labels are ``@``-separated node keys: paths for trees, ids for DAGs.

A declaration may list the same path (or edge) more than once: repeats are dropped, first
occurrence order kept, and the count is logged.
"""

from __future__ import annotations

import gzip
import logging
import re
from pathlib import Path

from .hierarchy import Taxonomy, HierarchyError

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
