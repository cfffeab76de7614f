"""Label hierarchies: named heads, each a tree, a DAG or a flat set of classes.

A :class:`Hierarchy` is an ordered list of :class:`Taxonomy` objects. Every node of every head has a
stable **global index**: heads are laid out one after the other in their order, and inside a head
nodes keep the order they were declared in. Model logits, targets and masks all use this layout,
shape ``(batch, hierarchy.num_nodes)``.

A node is identified inside its head by its **key**: the full path for trees built from label
paths (``"Substrate > Unconsolidated (soft) > Sand / mud (<2mm)"``), the path string for ARFF trees
(``"01/01/03"``) or the node id for DAGs (``"GO0003674"``). Globally it is named ``"head: key"``
(the ``id2label`` strings of the model config).

Depth is 1 for roots; a DAG node's depth is one more than its deepest parent, so every child is
deeper than all of its parents.

The hot-path index structures (all ``numpy`` int64, global indices) are:

- ``parents_padded`` ``(N, P)``: parents of each node, padded with -1;
- ``ancestor_pairs`` ``(2, M)``: every (ancestor, descendant) pair, self pairs included — the
  sparse form of the ancestor matrix, what the max-constraint scatters over;
- ``ancestors_padded`` ``(N, A)``: each node's ancestors *including itself*, padded with -1;
- ``descendants_ptr``/``descendants_idx``: CSR lists of each node's descendants (itself included);
- ``depth`` ``(N,)``, ``is_leaf`` ``(N,)``, ``levels`` (per-depth index arrays).

The dense ``(N, N)`` matrix is available from :meth:`Hierarchy.dense_ancestor_matrix` for tests.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .taxonomy import KINDS, Taxonomy, HierarchyError, split_path

__all__ = ["KINDS", "Taxonomy", "Hierarchy", "HierarchyError", "split_path"]


def __getattr__(name: str) -> Any:
    if name == "Head":  # deprecated alias, kept for one release
        warnings.warn("benthicnet_hf.hierarchy.Head is renamed Taxonomy; Head will be removed in 0.3",
                      DeprecationWarning, stacklevel=2)
        return Taxonomy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Hierarchy:
    """An ordered collection of heads with global node indexing. See the module docstring."""

    heads: tuple[Taxonomy, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", tuple(self.heads))
        if not self.heads:
            raise HierarchyError("a hierarchy needs at least one head")
        names = [h.name for h in self.heads]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise HierarchyError(f"duplicate head name(s): {dup}")

    # ----------------------------------------------------------------- layout
    @property
    def head_names(self) -> list[str]:
        return [h.name for h in self.heads]

    def head(self, name: str) -> Taxonomy:
        for h in self.heads:
            if h.name == name:
                return h
        raise KeyError(f"no head named {name!r}; heads are {self.head_names}")

    @cached_property
    def offsets(self) -> np.ndarray:
        """(num_heads + 1,) start of each head in the global layout, then the total."""
        return np.concatenate([[0], np.cumsum([len(h.nodes) for h in self.heads])]).astype(np.int64)

    @property
    def num_nodes(self) -> int:
        return int(self.offsets[-1])

    def head_slice(self, name_or_index: str | int) -> slice:
        i = name_or_index if isinstance(name_or_index, int) else self.head_names.index(
            self.head(name_or_index).name
        )
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    @cached_property
    def labels(self) -> list[str]:
        """Global node names ``"head: key"`` in index order (the model's ``id2label``)."""
        return [f"{h.name}: {k}" for h in self.heads for k in h.nodes]

    def index(self, head: str, key: str) -> int:
        """Global index of node ``key`` of ``head``."""
        h = self.head(head)
        return int(self.offsets[self.head_names.index(head)]) + h.index[key]

    @cached_property
    def head_of_node(self) -> np.ndarray:
        """(N,) head number of each node."""
        return np.repeat(np.arange(len(self.heads)), np.diff(self.offsets))

    # -------------------------------------------------------- index structures
    def _global(self, per_head: Iterable[Iterable[Iterable[int]]]) -> list[list[int]]:
        out: list[list[int]] = []
        for off, lists in zip(self.offsets, per_head):
            out.extend([int(off) + j for j in lst] for lst in lists)
        return out

    @staticmethod
    def _pad(lists: list[list[int]]) -> np.ndarray:
        width = max(1, max(len(x) for x in lists))
        arr = np.full((len(lists), width), -1, dtype=np.int64)
        for i, x in enumerate(lists):
            arr[i, : len(x)] = x
        return arr

    @cached_property
    def parents_padded(self) -> np.ndarray:
        """(N, max_parents) global parent indices, -1 padded."""
        return self._pad(self._global(h.parents for h in self.heads))

    @cached_property
    def parent_index(self) -> np.ndarray:
        """(N,) first parent of each node, -1 for roots."""
        return self.parents_padded[:, 0].copy()

    @cached_property
    def ancestors_padded(self) -> np.ndarray:
        """(N, max_ancestors) ancestors of each node including itself, -1 padded."""
        return self._pad(self._global([sorted(a) for a in h.ancestors] for h in self.heads))

    @cached_property
    def ancestor_pairs(self) -> np.ndarray:
        """(2, M) all (ancestor, descendant) pairs, self pairs included, sorted by ancestor."""
        anc = self.ancestors_padded
        desc = np.repeat(np.arange(anc.shape[0]), anc.shape[1])
        a = anc.reshape(-1)
        keep = a >= 0
        pairs = np.stack([a[keep], desc[keep]])
        order = np.lexsort((pairs[1], pairs[0]))
        return pairs[:, order]

    @cached_property
    def descendants_ptr(self) -> np.ndarray:
        """(N + 1,) CSR row pointer into :attr:`descendants_idx`."""
        counts = np.bincount(self.ancestor_pairs[0], minlength=self.num_nodes)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    @property
    def descendants_idx(self) -> np.ndarray:
        """(M,) descendants (itself included) of node i at ``descendants_idx[ptr[i]:ptr[i+1]]``."""
        return self.ancestor_pairs[1]

    def descendants(self, i: int) -> np.ndarray:
        return self.descendants_idx[self.descendants_ptr[i] : self.descendants_ptr[i + 1]]

    @cached_property
    def depth(self) -> np.ndarray:
        """(N,) depth of each node (1 for roots)."""
        return np.concatenate([h.depth for h in self.heads])

    @cached_property
    def is_leaf(self) -> np.ndarray:
        """(N,) True for nodes without children."""
        return np.concatenate([np.array([not c for c in h.children], dtype=bool) for h in self.heads])

    @cached_property
    def is_root(self) -> np.ndarray:
        return self.parent_index < 0

    @cached_property
    def levels(self) -> list[np.ndarray]:
        """Global indices of the nodes at depth 1, 2, ... (all heads together)."""
        return [np.flatnonzero(self.depth == d) for d in range(1, int(self.depth.max()) + 1)]

    def dense_ancestor_matrix(self) -> np.ndarray:
        """(N, N) bool, ``R[i, j]`` = j is i or a descendant of i. For tests only."""
        r = np.zeros((self.num_nodes, self.num_nodes), dtype=bool)
        r[self.ancestor_pairs[0], self.ancestor_pairs[1]] = True
        return r

    # ---------------------------------------------------------- serialisation
    def to_list(self) -> list[dict[str, Any]]:
        """Ordered list form (safe in a config.json written with sorted keys)."""
        return [h.to_dict() for h in self.heads]

    @classmethod
    def from_list(cls, items: Sequence[dict[str, Any]]) -> "Hierarchy":
        """The hierarchy of :meth:`to_list`'s form, each head validated strictly
        (:func:`~benthicnet_hf.taxonomy.check_head_dict`: errors name the head and the field)."""
        if not isinstance(items, (list, tuple)):
            raise HierarchyError(f"expected a list of head dicts, got {type(items).__name__}")
        return cls(tuple(Taxonomy.from_dict(d, where=f"hierarchy head {i}") for i, d in enumerate(items)))

    def fingerprint(self) -> dict[str, Any]:
        """What the model's output layout depends on, hashed: ``{"all": sha256, "heads": {name: sha256}}``.

        Covers head order, names, kinds, node keys in order and parents (the labelling policy
        ``exhaustive`` and ``sep`` do not change what a weight means, so they are left out). Stored in
        a saved model's config as ``hierarchy_fingerprint``; compare two with
        :func:`fingerprint_difference`.
        """
        def digest(obj: Any) -> str:
            text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            return hashlib.sha256(text.encode("utf-8")).hexdigest()

        heads = {h.name: [h.kind, list(h.nodes), [list(p) for p in h.parents]] for h in self.heads}
        return {"all": digest([[name, *body] for name, body in heads.items()]),
                "heads": {name: digest(body) for name, body in heads.items()}}

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps({"heads": self.to_list()}, indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> "Hierarchy":
        text = str(path_or_text)
        if not text.lstrip().startswith(("{", "[")):
            text = Path(path_or_text).read_text()
        data = json.loads(text)
        if isinstance(data, dict) and "heads" not in data:
            raise HierarchyError(f"{str(path_or_text)[:200]}: expected {{\"heads\": [...]}} or a list of heads, "
                                 f"got an object with keys {sorted(data)[:20]}")
        return cls.from_list(data["heads"] if isinstance(data, dict) else data)

    # ----------------------------------------------------------------- helpers
    def with_exhaustive(self, **flags: bool) -> "Hierarchy":
        """A copy with the default exhaustive flag of the named heads changed."""
        unknown = set(flags) - set(self.head_names)
        if unknown:
            raise KeyError(f"no head(s) named {sorted(unknown)}; heads are {self.head_names}")
        return Hierarchy(tuple(
            Taxonomy(h.name, h.nodes, h.parents, h.kind, flags.get(h.name, h.exhaustive), h.sep)
            for h in self.heads
        ))

    def subset(self, names: Sequence[str]) -> "Hierarchy":
        """The hierarchy restricted to the named heads, in the given order."""
        return Hierarchy(tuple(self.head(n) for n in names))

    def summary(self) -> str:
        """A short human-readable table of heads, node counts, depth and leaves."""
        lines = [f"{'head':<12}{'kind':<6}{'nodes':>7}{'depth':>7}{'leaves':>8}{'roots':>7}  exhaustive"]
        for i, h in enumerate(self.heads):
            s = self.head_slice(i)
            lines.append(
                f"{h.name:<12}{h.kind:<6}{len(h.nodes):>7}{int(h.depth.max()):>7}"
                f"{int(self.is_leaf[s].sum()):>8}{int(self.is_root[s].sum()):>7}  {h.exhaustive}"
            )
        lines.append(f"{'total':<12}{'':<6}{self.num_nodes:>7}")
        return "\n".join(lines)

    @classmethod
    def catami(cls) -> "Hierarchy":
        """The CATAMI scheme shipped with the package: biota, substrate, relief, bedforms, colour."""
        return cls.from_json(Path(__file__).with_name("schemes") / "catami.json")


def fingerprint_difference(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """What differs between two :meth:`Hierarchy.fingerprint` values (None when they agree).

    Names missing, added and changed heads (changed = other node keys, order, parents or kind), or
    a changed head order.
    """
    if saved.get("all") == current.get("all"):
        return None
    old, new = saved.get("heads") or {}, current.get("heads") or {}
    parts = []
    missing = [h for h in old if h not in new]
    added = [h for h in new if h not in old]
    changed = [h for h in new if h in old and old[h] != new[h]]
    if missing:
        parts.append(f"head(s) {missing} missing")
    if added:
        parts.append(f"head(s) {added} added")
    if changed:
        parts.append(f"head(s) {changed} changed (node names, order, parents or kind)")
    if not parts:
        parts.append(f"head order changed: {list(old)} -> {list(new)}")
    return "; ".join(parts)
