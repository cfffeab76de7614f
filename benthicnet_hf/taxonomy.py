"""One taxonomy of a label hierarchy: a tree, a DAG or a flat set of classes.

A taxonomy is one CATAMI category (biota, substrate, relief, bedforms, colour) or one ARFF class
attribute. The model gives each taxonomy its own classification head (the paper's "head"), so a
taxonomy's name is also the name of its head in configs, losses and metrics (``"<head>/hml_ap"``).
See :mod:`benthicnet_hf.hierarchy` for how taxonomies are combined into a global node layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, Sequence

import numpy as np

KINDS = ("tree", "dag", "flat")


def split_path(path: str, sep: str = " > ") -> list[str]:
    """Split a label path into stripped components.

    A separator written with surrounding spaces (``" > "``) matches only with whitespace on both
    sides, so names such as ``"Waves (>10cm height)"`` stay whole.
    """
    if not sep:
        return [path.strip()]
    if sep != sep.strip():
        return [p.strip() for p in re.split(r"\s+" + re.escape(sep.strip()) + r"\s+", path.strip())]
    return [p.strip() for p in path.split(sep)]


class HierarchyError(ValueError):
    """A hierarchy definition is invalid (cycle, duplicate, empty head, bad parent)."""


#: Fields of a head's dict form (:meth:`Taxonomy.to_dict`); ``name`` and ``nodes`` are required.
HEAD_FIELDS = ("name", "kind", "exhaustive", "sep", "nodes", "parents")


def _type_name(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _is_index(value: Any) -> bool:
    """An integer that is not a bool (``True`` is an int in Python, never a node index here)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _has_empty_component(path: str, sep: str) -> bool:
    """Whether ``path`` has an empty component: ``"A >  > C"`` splits into ``["A", "> C"]`` with
    ``" > "`` (the separator needs whitespace on both sides), so a leftover separator counts too."""
    core = sep.strip()
    return any(not part or (core and (part.startswith(core) or part.endswith(core)))
               for part in split_path(path, sep))


def check_head_dict(d: Any, where: str = "head entry") -> None:
    """Validate a head's dict form strictly: no coercion of junk, errors name the head and field.

    Expected: ``name`` a non-empty str; ``nodes`` a non-empty list of non-empty str, none with an
    empty path component for ``sep``; ``parents`` (optional) a list of one list of int indices per
    node; ``kind`` one of :data:`KINDS`; ``exhaustive`` a bool; ``sep`` a str; no other keys.
    """
    if not isinstance(d, dict):
        raise HierarchyError(f"{where}: expected a dict with fields {list(HEAD_FIELDS)}, got {_type_name(d)[:200]}")
    name = d.get("name")
    label = f"{where} ({name!r})" if isinstance(name, str) else where
    unknown = sorted(map(str, set(d) - set(HEAD_FIELDS)))
    if unknown:
        raise HierarchyError(f"{label}: unknown field(s) {unknown}; allowed are {list(HEAD_FIELDS)}")
    missing = [k for k in ("name", "nodes") if k not in d]
    if missing:
        raise HierarchyError(f"{label}: missing field(s) {missing}")
    if not isinstance(name, str) or not name.strip():
        raise HierarchyError(f"{label}: field 'name' must be a non-empty string, got {_type_name(name)}")
    for key, types, text in (("kind", str, "a string"), ("exhaustive", bool, "true or false"), ("sep", str, "a string")):
        if key in d and not isinstance(d[key], types):
            raise HierarchyError(f"{label}: field {key!r} must be {text}, got {_type_name(d[key])}")
    nodes = d["nodes"]
    if not isinstance(nodes, (list, tuple)):
        raise HierarchyError(f"{label}: field 'nodes' must be a list of strings, got {_type_name(nodes)[:200]}")
    sep = d.get("sep", " > ")
    for i, node in enumerate(nodes):
        if not isinstance(node, str) or not node.strip():
            raise HierarchyError(f"{label}: field 'nodes', entry {i}: expected a non-empty string, got {_type_name(node)}")
        if sep and d.get("kind", "tree") == "tree" and _has_empty_component(node, sep):
            raise HierarchyError(f"{label}: field 'nodes', entry {i}: path {node!r} has an empty component "
                                 f"(separator {sep!r})")
    parents = d.get("parents")
    if parents is None:
        return
    if not isinstance(parents, (list, tuple)) or len(parents) != len(nodes):
        got = f"{len(parents)} entries" if isinstance(parents, (list, tuple)) else _type_name(parents)[:200]
        raise HierarchyError(f"{label}: field 'parents' must be a list of {len(nodes)} index lists (one per "
                             f"node), got {got}")
    for i, ps in enumerate(parents):
        if not isinstance(ps, (list, tuple)) or not all(_is_index(p) for p in ps):
            raise HierarchyError(f"{label}: field 'parents', entry {i} (node {nodes[i]!r}): expected a list of "
                                 f"integer node indices, got {_type_name(ps)[:200]}")


@dataclass(frozen=True)
class Taxonomy:
    """One taxonomy of a hierarchy (the labels of one classification head).

    Args:
        name: head name, e.g. ``"substrate"``.
        nodes: node keys in index order.
        parents: for each node, the local indices of its parents (empty for roots).
        kind: ``"tree"`` (at most one parent), ``"dag"`` or ``"flat"`` (no parents).
        exhaustive: default labelling policy: unlisted nodes are known negatives (True) or
            unknown (False). See :mod:`benthicnet_hf.labels`.
        sep: separator of path components in keys (``" > "`` for CATAMI, ``"/"`` for ARFF trees);
            empty for DAG ids.
    """

    name: str
    nodes: tuple[str, ...]
    parents: tuple[tuple[int, ...], ...] = ()
    kind: str = "tree"
    exhaustive: bool = True
    sep: str = " > "

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(str(n) for n in self.nodes))
        parents = self.parents or tuple(() for _ in self.nodes)
        object.__setattr__(self, "parents", tuple(tuple(int(p) for p in ps) for ps in parents))
        if self.kind not in KINDS:
            raise HierarchyError(f"head {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if not self.nodes:
            raise HierarchyError(f"head {self.name!r} is empty: it declares no nodes")
        if len(self.parents) != len(self.nodes):
            raise HierarchyError(
                f"head {self.name!r}: {len(self.nodes)} nodes but {len(self.parents)} parent lists"
            )
        seen: dict[str, int] = {}
        dupes = []
        for i, key in enumerate(self.nodes):
            if key in seen:
                dupes.append(f"{key!r} (nodes {seen[key]} and {i})")
            seen.setdefault(key, i)
        if dupes:
            raise HierarchyError(f"head {self.name!r}: duplicate node(s): {', '.join(dupes)}")
        n = len(self.nodes)
        for i, ps in enumerate(self.parents):
            bad = [p for p in ps if not 0 <= p < n or p == i]
            if bad:
                raise HierarchyError(
                    f"head {self.name!r}: node {self.nodes[i]!r} has invalid parent index(es) {bad}"
                )
            if self.kind == "flat" and ps:
                raise HierarchyError(f"head {self.name!r} is flat but node {self.nodes[i]!r} has parents")
            if self.kind == "tree" and len(ps) > 1:
                names = [self.nodes[p] for p in ps]
                raise HierarchyError(
                    f"head {self.name!r} is a tree but node {self.nodes[i]!r} has parents {names}; "
                    "declare it kind='dag'"
                )
        self._check_acyclic()

    def _check_acyclic(self) -> None:
        order = self.topological_order  # raises on a cycle
        assert len(order) == len(self.nodes)

    @cached_property
    def index(self) -> dict[str, int]:
        """Key → local index."""
        return {k: i for i, k in enumerate(self.nodes)}

    @cached_property
    def children(self) -> tuple[tuple[int, ...], ...]:
        kids: list[list[int]] = [[] for _ in self.nodes]
        for i, ps in enumerate(self.parents):
            for p in ps:
                kids[p].append(i)
        return tuple(tuple(k) for k in kids)

    @cached_property
    def topological_order(self) -> tuple[int, ...]:
        """Local indices with every parent before its children (Kahn's algorithm)."""
        indeg = [len(ps) for ps in self.parents]
        ready = [i for i, d in enumerate(indeg) if d == 0]
        order: list[int] = []
        while ready:
            i = ready.pop()
            order.append(i)
            for c in self.children[i]:
                indeg[c] -= 1
                if indeg[c] == 0:
                    ready.append(c)
        if len(order) != len(self.nodes):
            stuck = [self.nodes[i] for i, d in enumerate(indeg) if d > 0]
            raise HierarchyError(
                f"head {self.name!r} has a cycle through node(s): {stuck[:10]}"
                + (f" and {len(stuck) - 10} more" if len(stuck) > 10 else "")
            )
        return tuple(order)

    @cached_property
    def ancestors(self) -> tuple[frozenset[int], ...]:
        """For each node, the set of its ancestors including itself (local indices)."""
        anc: list[frozenset[int]] = [frozenset()] * len(self.nodes)
        for i in self.topological_order:
            s = {i}
            for p in self.parents[i]:
                s |= anc[p]
            anc[i] = frozenset(s)
        return tuple(anc)

    @cached_property
    def descendants(self) -> tuple[frozenset[int], ...]:
        """For each node, the set of its descendants including itself (local indices)."""
        desc: list[set[int]] = [set() for _ in self.nodes]
        for i, anc in enumerate(self.ancestors):
            for a in anc:
                desc[a].add(i)
        return tuple(frozenset(d) for d in desc)

    @cached_property
    def depth(self) -> np.ndarray:
        """(n,) depth of each node, 1 for roots."""
        d = np.ones(len(self.nodes), dtype=np.int64)
        for i in self.topological_order:
            if self.parents[i]:
                d[i] = 1 + max(d[p] for p in self.parents[i])
        return d

    def name_of(self, i: int) -> str:
        """Last path component of node ``i`` (the whole key for DAG ids and flat classes)."""
        key = self.nodes[i]
        return key.rsplit(self.sep, 1)[-1] if self.sep else key

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "exhaustive": self.exhaustive,
            "sep": self.sep,
            "nodes": list(self.nodes),
            "parents": [list(p) for p in self.parents],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "head entry") -> "Taxonomy":
        """A head from its :meth:`to_dict` form, validated strictly (:func:`check_head_dict`).

        ``where`` names the entry in errors (e.g. ``"hierarchy head 2"``).
        """
        check_head_dict(d, where)
        return cls(
            name=d["name"],
            nodes=tuple(d["nodes"]),
            parents=tuple(tuple(p) for p in d.get("parents") or [()] * len(d["nodes"])),
            kind=d.get("kind", "tree"),
            exhaustive=d.get("exhaustive", True),
            sep=d.get("sep", " > "),
        )

    @classmethod
    def from_paths(
        cls, name: str, paths: Iterable[str], sep: str = " > ", exhaustive: bool = True
    ) -> "Taxonomy":
        """A tree from full label paths. Missing intermediate nodes are created.

        Node order is the order of first appearance, a path's node before its implied parents
        (this reproduces the BenthicNet reference index order). Duplicate paths are an error.
        """
        nodes: dict[str, int] = {}
        parent_of: dict[str, str | None] = {}
        declared: dict[str, int] = {}
        dupes = []
        for lineno, raw in enumerate(paths):
            parts = split_path(str(raw), sep)
            if any(not p for p in parts):
                raise HierarchyError(f"head {name!r}: path {raw!r} (entry {lineno}) has an empty component")
            key = sep.join(parts)
            if key in declared:
                dupes.append(f"{key!r} (entries {declared[key]} and {lineno})")
                continue
            declared[key] = lineno
            for depth in range(len(parts), 0, -1):
                k = sep.join(parts[:depth])
                if k in nodes:
                    break
                nodes[k] = len(nodes)
                parent_of[k] = sep.join(parts[: depth - 1]) if depth > 1 else None
        if dupes:
            raise HierarchyError(f"head {name!r}: duplicate path(s): {', '.join(dupes)}")
        keys = tuple(nodes)
        parents = tuple(() if parent_of[k] is None else (nodes[parent_of[k]],) for k in keys)
        return cls(name=name, nodes=keys, parents=parents, kind="tree", exhaustive=exhaustive, sep=sep)

    @classmethod
    def from_edges(
        cls, name: str, edges: Iterable[tuple[str, str]], exhaustive: bool = True
    ) -> "Taxonomy":
        """A DAG from ``(parent, child)`` id pairs, nodes in order of first appearance."""
        nodes: dict[str, int] = {}
        parents: list[list[int]] = []
        seen_edges: set[tuple[str, str]] = set()
        for parent, child in edges:
            if (parent, child) in seen_edges:
                raise HierarchyError(f"head {name!r}: duplicate edge {parent!r} -> {child!r}")
            seen_edges.add((parent, child))
            for k in (parent, child):
                if k not in nodes:
                    nodes[k] = len(nodes)
                    parents.append([])
            parents[nodes[child]].append(nodes[parent])
        return cls(
            name=name, nodes=tuple(nodes), parents=tuple(tuple(p) for p in parents),
            kind="dag", exhaustive=exhaustive, sep="",
        )

    @classmethod
    def flat(cls, name: str, classes: Sequence[str], exhaustive: bool = True) -> "Taxonomy":
        """A flat multi-label head (no hierarchy), e.g. the CATAMI colour qualifier."""
        return cls(name=name, nodes=tuple(classes), kind="flat", exhaustive=exhaustive, sep="")
