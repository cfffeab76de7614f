"""Partial labels → target and mask vectors, and back.

Every sample gets, over the global node layout of a :class:`~benthicnet_hf.hierarchy.Hierarchy`,
a **target** vector (1 = the node is present) and a **mask** vector (1 = the target bit is *known*,
0 = unknown). Loss and metrics only ever look at bits whose mask is 1.

Semantics, per head, for a sample whose annotations for that head are the node set ``S``:

- **positives**: ``T = S ∪ ancestors(S)``: a labelled node implies all of its ancestors.
- **missing head**: no annotation for the head (empty/None/NaN cell) → target 0 and mask 0 on the
  whole head. The sample then contributes no loss and no metric for that head.
- **missing depth**: a *deepest* positive node (no child in ``T``) that is not a leaf was labelled
  only down to that level: all of its descendants are unknown (mask 0).
- **missing branches**: on an *exhaustive* head every other node is a known negative (mask 1,
  target 0). On a *non-exhaustive* head only what is listed is known: the positives ``T`` have
  mask 1, every other node mask 0. Exhaustiveness is a per-head default
  (:attr:`Taxonomy.exhaustive`) that may be overridden per head and per data source.
  **Every CATAMI head, biota included, is exhaustive by default**, as in the BenthicNet authors'
  code: all nodes are known except the descendants of a label cut short and whole missing heads.
  Non-exhaustive is an explicit opt-in (``exhaustive={"biota": False}`` or
  ``source_exhaustive={"survey_B": {"biota": False}}``) for a survey that lists only some organisms.
- **listed unknowns**: a table may also say which nodes are unknown (the released BenthicNet
  ``<head>_mask`` columns, read by :mod:`benthicnet_hf.data.table`); the final mask is this mask
  AND NOT the listed nodes.
- Flat heads (e.g. colour) have no ancestors and no depth; the same rules apply.

Worked example, CATAMI substrate (exhaustive) labelled ``"Substrate > Unconsolidated (soft)"``::

    node                                         target  mask
    Substrate                                       1      1    ancestor of the label
    Substrate > Consolidated (hard)                 0      1    other branch: known negative
    Substrate > Consolidated (hard) > Boulders      0      1
    Substrate > Unconsolidated (soft)               1      1    the label
    Substrate > Unconsolidated (soft) > Sand ...    0      0    below a label cut short: unknown
    Unclear, Water column, Anthropogenic ...        0      1    other roots: known negatives

The same label on a head declared non-exhaustive would have mask 1 only on its two positives.

Cells may hold several labels (biota often lists several organisms): a list of strings, or one
string with labels separated by ``;`` (or ``|``). A label may carry its head token
(``"[SUBSTRATE] > Substrate > ..."``).
"""

from __future__ import annotations

import difflib
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import sparse

from .hierarchy import Taxonomy, Hierarchy, split_path

logger = logging.getLogger(__name__)

UNKNOWN_POLICIES = ("error", "ancestor", "mask")
CELL_SEPARATORS = (";", "|")


class UnknownLabelError(ValueError):
    """Labels that are not nodes of their head, all of them at once.

    The message groups them by (column, label) with a count, the 1-based data rows (header not
    counted) and the closest known paths. ``unknown`` holds ``(row0, head, column, label)`` tuples
    with 0-based row positions.
    """

    def __init__(self, message: str, unknown: list[tuple[int, str, str, str]] | None = None) -> None:
        super().__init__(message)
        self.unknown = list(unknown or [])


@dataclass
class EncodedLabels:
    """Result of :meth:`LabelEncoder.encode`.

    Attributes:
        targets: ``(rows, num_nodes)`` uint8, 1 = present.
        mask: ``(rows, num_nodes)`` uint8, 1 = known.
        report: what an opt-in unknown-label policy changed: ``{"ancestor": [...], "mask": [...]}``
            lists of ``(row, head, label, replacement)`` tuples.
    """

    targets: np.ndarray
    mask: np.ndarray
    report: dict[str, list[tuple[int, str, str, str | None]]] = field(default_factory=dict)


def is_missing(cell: Any) -> bool:
    """None, NaN, empty string/list count as "no annotation for this head"."""
    if cell is None:
        return True
    if isinstance(cell, float) and math.isnan(cell):
        return True
    if isinstance(cell, str):
        return not cell.strip()
    if isinstance(cell, (list, tuple, np.ndarray)):
        return len(cell) == 0
    return False


def split_cell(cell: Any) -> list[str]:
    """The label strings of one table cell."""
    if is_missing(cell):
        return []
    if isinstance(cell, (list, tuple, np.ndarray)):
        return [str(c).strip() for c in cell if not is_missing(c)]
    text = str(cell)
    for sep in CELL_SEPARATORS:
        if sep in text:
            return [t.strip() for t in text.split(sep) if t.strip()]
    return [text.strip()]


class LabelEncoder:
    """Encode label strings into targets and masks (see the module docstring for semantics).

    Args:
        hierarchy: the hierarchy.
        exhaustive: per-head override of :attr:`Taxonomy.exhaustive` (every CATAMI head is exhaustive by
            default; ``{"biota": False}`` opts biota out everywhere).
        source_exhaustive: per data source, per-head overrides, e.g.
            ``{"survey_B": {"biota": False}}`` when survey B lists only some of the organisms.
        on_unknown: ``"error"`` (default) raises one :class:`UnknownLabelError` listing every
            unknown label; ``"ancestor"`` maps
            an unknown path to its deepest known prefix (or masks the head if none); ``"mask"``
            masks the head for that row. Opt-in policies are reported in
            :attr:`EncodedLabels.report` and logged.
    """

    def __init__(
        self,
        hierarchy: Hierarchy,
        exhaustive: Mapping[str, bool] | None = None,
        source_exhaustive: Mapping[str, Mapping[str, bool]] | None = None,
        on_unknown: str = "error",
    ) -> None:
        if on_unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"on_unknown must be one of {UNKNOWN_POLICIES}, got {on_unknown!r}")
        for name in list(exhaustive or {}) + [h for d in (source_exhaustive or {}).values() for h in d]:
            hierarchy.head(name)  # raises KeyError naming the heads
        self.hierarchy = hierarchy
        self.exhaustive = {h.name: h.exhaustive for h in hierarchy.heads} | dict(exhaustive or {})
        self.source_exhaustive = {s: dict(d) for s, d in (source_exhaustive or {}).items()}
        self.on_unknown = on_unknown

    # ------------------------------------------------------------ single cell
    def _resolve(self, head: Taxonomy, label: str) -> int | None:
        """Local index of ``label`` in ``head``, or None if unknown."""
        text = label.strip()
        if text.startswith("["):
            tag, _, rest = text.partition("]")
            if tag[1:].strip().lower() != head.name.lower():
                return None
            text = rest.strip()
            if text.startswith(">"):
                text = text[1:].strip()
        if head.sep:
            text = head.sep.join(split_path(text, head.sep))
        return head.index.get(text)

    def _deepest_known_prefix(self, head: Taxonomy, label: str) -> int | None:
        if not head.sep:
            return None
        text = label.split("]", 1)[-1].lstrip(" >") if label.strip().startswith("[") else label
        parts = split_path(text, head.sep)
        for d in range(len(parts) - 1, 0, -1):
            i = head.index.get(head.sep.join(parts[:d]))
            if i is not None:
                return i
        return None

    def unknown_error(self, unknown: Sequence[tuple[int, str, str, str]]) -> UnknownLabelError:
        """One error for all unknown labels.

        Args:
            unknown: ``(row0, head, column, label)`` tuples, ``row0`` the 0-based row position.
        """
        groups: dict[tuple[str, str, str], list[int]] = {}
        for row, head, column, label in unknown:
            groups.setdefault((column, head, label), []).append(row)
        lines = []
        for (column, head, label), rows in sorted(groups.items(), key=lambda kv: min(kv[1])):
            shown = ", ".join(str(r + 1) for r in sorted(rows)[:10]) + (" ..." if len(rows) > 10 else "")
            close = difflib.get_close_matches(label.split("]", 1)[-1].strip(" >"),
                                              self.hierarchy.head(head).nodes, n=3, cutoff=0.5)
            hint = f"; closest known: {close}" if close else ""
            lines.append(f"  column {column!r} (head {head!r}): unknown label {label!r} in "
                         f"{len(rows)} row(s): {shown}{hint}")
        n_rows = len({r for r, *_ in unknown})
        return UnknownLabelError(
            f"{len(groups)} unknown label(s) in {n_rows} row(s) (rows are 1-based data rows, header not "
            "counted, so data row N is spreadsheet row N+1):\n" + "\n".join(lines)
            + "\nFix the labels, or pass on_unknown='ancestor'/'mask' (or skip_bad) to map or mask them "
            "with a report.", unknown=list(unknown))

    def encode_cell(
        self, head: Taxonomy, labels: Sequence[str], exhaustive: bool, row: int = 0, column: str | None = None,
        report: dict | None = None, policy: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(target, mask)`` uint8 vectors of length ``len(head.nodes)`` for one sample.

        ``policy`` overrides ``on_unknown`` (``encode`` collects every unknown label with ``"mask"``
        before raising one error for all of them).
        """
        policy = policy or self.on_unknown
        n = len(head.nodes)
        target = np.zeros(n, dtype=np.uint8)
        mask = np.zeros(n, dtype=np.uint8)
        resolved = [self._resolve(head, lab) for lab in labels]
        unknown = [lab for lab, i in zip(labels, resolved) if i is None]
        if unknown and policy == "error":
            raise self.unknown_error([(row, head.name, column or head.name, lab) for lab in unknown])
        idx: list[int] = []
        masked = False
        for lab, i in zip(labels, resolved):
            if i is None:
                i = self._deepest_known_prefix(head, lab) if policy == "ancestor" else None
                if report is not None:  # every unknown label of the cell is reported, not only the first
                    kind = "ancestor" if i is not None else "mask"
                    report.setdefault(kind, []).append((row, head.name, lab, None if i is None else head.nodes[i]))
                masked |= i is None
            if i is not None:
                idx.append(i)
        if masked or not idx:
            return target, mask  # the whole head becomes unknown for this row
        positives = sorted(set().union(*(head.ancestors[i] for i in idx)))
        target[positives] = 1
        if not exhaustive:
            mask[positives] = 1
            return target, mask
        mask[:] = 1
        for i in positives:
            if head.children[i] and not any(target[c] for c in head.children[i]):
                # label cut short at an inner node: everything below it is unknown
                mask[list(head.descendants[i])] = 0
                mask[i] = 1
        return target, mask

    # ------------------------------------------------------------------ batch
    def encode(
        self,
        columns: Mapping[str, Sequence[Any]],
        sources: Sequence[str] | None = None,
        column_names: Mapping[str, str] | None = None,
    ) -> EncodedLabels:
        """Encode a table column-wise.

        Args:
            columns: head name → sequence of cells (one per row). Heads absent from ``columns`` are
                missing for every row (mask 0).
            sources: optional data source per row, for ``source_exhaustive``.
            column_names: head → table column name, used in error messages.

        Returns:
            :class:`EncodedLabels` with ``(rows, num_nodes)`` uint8 arrays.

        Rows sharing a cell value share the work: each distinct (cell, policy) is encoded once and
        broadcast, so 188,688 BenthicNet rows encode in well under ten seconds.

        Raises:
            UnknownLabelError: with ``on_unknown="error"``, once, listing every unknown label of
                every head (grouped by label, with counts, 1-based rows and closest known paths).
        """
        unknown = set(columns) - set(self.hierarchy.head_names)
        if unknown:
            raise KeyError(f"label column(s) for unknown head(s) {sorted(unknown)}; heads are "
                           f"{self.hierarchy.head_names}")
        lengths = {k: len(v) for k, v in columns.items()}
        if sources is not None:
            lengths["<sources>"] = len(sources)
        if len(set(lengths.values())) > 1:
            raise ValueError(f"label columns have different lengths: {lengths}")
        rows = next(iter(lengths.values()), 0)
        targets = np.zeros((rows, self.hierarchy.num_nodes), dtype=np.uint8)
        mask = np.zeros_like(targets)
        report: dict[str, list] = {}
        column_names = dict(column_names or {})
        # "error" collects like "mask" first, so one error can list every unknown label
        policy = "mask" if self.on_unknown == "error" else self.on_unknown
        for hi, head in enumerate(self.hierarchy.heads):
            if head.name not in columns:
                continue
            sl = self.hierarchy.head_slice(hi)
            cells = columns[head.name]
            codes = np.empty(rows, dtype=np.int64)
            uniq: dict[tuple[str, bool], int] = {}
            first_row: list[int] = []
            for r in range(rows):
                cell = cells[r]
                key = "\x1f".join(split_cell(cell))
                exh = self._exhaustive(head.name, None if sources is None else sources[r])
                c = uniq.get((key, exh))
                if c is None:
                    c = uniq[(key, exh)] = len(uniq)
                    first_row.append(r)
                codes[r] = c
            u_t = np.zeros((len(uniq), len(head.nodes)), dtype=np.uint8)
            u_m = np.zeros_like(u_t)
            touched: dict[int, list] = {}
            for (key, exh), c in uniq.items():
                labels = key.split("\x1f") if key else []
                local_report: dict[str, list] = {}
                u_t[c], u_m[c] = self.encode_cell(
                    head, labels, exh, row=first_row[c], column=column_names.get(head.name, head.name),
                    report=local_report, policy=policy,
                )
                if local_report:
                    touched[c] = [(kind, item) for kind, items in local_report.items() for item in items]
            targets[:, sl] = u_t[codes]
            mask[:, sl] = u_m[codes]
            for c, items in touched.items():
                for r in np.flatnonzero(codes == c):
                    for kind, (_, hname, lab, rep) in items:
                        report.setdefault(kind, []).append((int(r), hname, lab, rep))
        if self.on_unknown == "error" and report.get("mask"):
            raise self.unknown_error([(r, hname, column_names.get(hname, hname), lab)
                                      for r, hname, lab, _ in report["mask"]])
        for kind, items in report.items():
            logger.warning("on_unknown=%r: %d label(s) %s, e.g. %s", self.on_unknown, len(items),
                           "mapped to an ancestor" if kind == "ancestor" else "masked their head", items[:3])
        return EncodedLabels(targets, mask, report)

    def _exhaustive(self, head: str, source: str | None) -> bool:
        if source is not None and source in self.source_exhaustive:
            return self.source_exhaustive[source].get(head, self.exhaustive[head])
        return self.exhaustive[head]


def decode(
    hierarchy: Hierarchy, scores: np.ndarray, threshold: float = 0.5
) -> list[dict[str, list[str]]]:
    """Deepest predicted paths per head.

    Args:
        scores: ``(num_nodes,)`` or ``(rows, num_nodes)`` targets or (coherent) probabilities.
        threshold: a node is predicted when its score is ``> threshold`` (the metrics' convention).

    Returns:
        one dict per row: head name → keys of predicted nodes none of whose children is predicted.
    """
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if s.shape[1] != hierarchy.num_nodes:
        raise ValueError(f"scores have {s.shape[1]} columns, the hierarchy has {hierarchy.num_nodes} nodes")
    on = s > threshold
    # a predicted node is "deepest" when none of its children is predicted
    parents = hierarchy.parents_padded
    child, k = np.nonzero(parents >= 0)
    n = hierarchy.num_nodes
    child_to_parent = sparse.csr_matrix(
        (np.ones(len(child)), (child, parents[child, k])), shape=(n, n)
    )
    deepest = on & ~np.asarray((sparse.csr_matrix(on.astype(np.float64)) @ child_to_parent).toarray() > 0)
    keys = [(h.name, k) for h in hierarchy.heads for k in h.nodes]
    out = []
    for row in deepest:
        d: dict[str, list[str]] = {h.name: [] for h in hierarchy.heads}
        for j in np.flatnonzero(row):
            d[keys[j][0]].append(keys[j][1])
        out.append(d)
    return out
