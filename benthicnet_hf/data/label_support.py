"""Label support per head: how many rows, known positive bits and known negative bits a split has.

A head whose known bits are all positives (or all negatives) teaches a classifier nothing and makes
its metrics meaningless (every ranking is perfect). :func:`label_support` counts, per head,

- ``rows``: rows with at least one known bit of the head (labelled rows);
- ``positives``: known positive bits (target 1, mask 1);
- ``negatives``: known negative bits (target 0, mask 1);

and :func:`check_trainable_heads` stops a run on a head with labelled rows but no known negatives
(or no known positives), saying how to fix it. All counts are one vectorised pass over the
``(rows, nodes)`` arrays.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ..hierarchy import Hierarchy

SUPPORT_KEYS = ("head", "rows", "positives", "negatives")


class DegenerateHeadError(ValueError):
    """A training head has labelled rows but no known negatives (or no known positives)."""


def known_bit_counts(targets: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(positives, negatives)``, each ``(nodes,)`` int64: known positive / known negative bits per node.

    Args:
        targets, mask: ``(rows, nodes)`` 0/1 (mask 1 = known).
    """
    known = np.asarray(mask).astype(bool)
    pos = np.add.reduce(known & np.asarray(targets).astype(bool), axis=0, dtype=np.int64)
    return pos, np.add.reduce(known, axis=0, dtype=np.int64) - pos


def label_support(targets: np.ndarray, mask: np.ndarray, hierarchy: Hierarchy) -> list[dict]:
    """Per head: labelled rows, known positive bits, known negative bits.

    Args:
        targets: ``(rows, num_nodes)`` 0/1 (uint8 or any numeric), 1 = present.
        mask: ``(rows, num_nodes)`` 0/1, 1 = known.
        hierarchy: gives the head slices of the global node layout.

    Returns:
        one dict per head, in head order: ``{"head", "rows", "positives", "negatives"}`` (ints).
    """
    t = np.asarray(targets)
    m = np.asarray(mask)
    if t.shape != m.shape or t.ndim != 2 or t.shape[1] != hierarchy.num_nodes:
        raise ValueError(f"targets {t.shape} and mask {m.shape} must both be (rows, {hierarchy.num_nodes})")
    starts = hierarchy.offsets[:-1]
    node_pos, node_neg = known_bit_counts(t, m)
    n_pos, n_neg = np.add.reduceat(node_pos, starts), np.add.reduceat(node_neg, starts)
    # labelled rows: rows with a known bit of the head (one reduceat over the node axis)
    n_rows = ((np.add.reduceat(m.astype(bool), starts, axis=1, dtype=np.int64) > 0).sum(axis=0)
              if t.shape[0] else np.zeros(len(starts), dtype=np.int64))
    return [{"head": h.name, "rows": int(n_rows[i]), "positives": int(n_pos[i]),
             "negatives": int(n_neg[i])} for i, h in enumerate(hierarchy.heads)]


def format_label_support(support: list[dict] | dict[str, list[dict]]) -> str:
    """A printable table of :func:`label_support` (one, or a dict split → support)."""
    per_split = support if isinstance(support, dict) else {"": support}
    lines = [f"{'split':<12}{'head':<12}{'rows':>9}{'known +':>12}{'known -':>12}"]
    for split, rows in per_split.items():
        for s in rows:
            flag = "" if s["rows"] == 0 or (s["positives"] and s["negatives"]) else "  <- degenerate"
            lines.append(f"{split:<12}{s['head']:<12}{s['rows']:>9}{s['positives']:>12}{s['negatives']:>12}{flag}")
    return "\n".join(lines)


def check_trainable_heads(support: list[dict], allow: bool | Iterable[str] = False, split: str = "train") -> None:
    """Raise :class:`DegenerateHeadError` for heads that have labelled rows but lack a class.

    A head with no labelled row is left out of training anyway and is not an error.

    Args:
        support: :func:`label_support` of the training split.
        allow: True allows every degenerate head; an iterable of head names allows those.
        split: the split's name, for the message.
    """
    allowed = set() if allow is False else None if allow is True else set(allow)
    if allowed is None:
        return
    bad = [s for s in support if s["rows"] > 0 and not (s["positives"] and s["negatives"])
           and s["head"] not in allowed]
    if not bad:
        return
    lines = [f"  head {s['head']!r}: {s['rows']} labelled rows, {s['positives']} known positive bits, "
             f"{s['negatives']} known negative bits (no known {'negatives' if s['positives'] else 'positives'})"
             for s in bad]
    raise DegenerateHeadError(
        f"{split} split: {len(bad)} head(s) cannot be trained or evaluated:\n" + "\n".join(lines)
        + "\nA head without known negatives learns to say yes to everything, and its AP is 1.0 for any "
        "scores. Fix: declare the head exhaustive (exhaustive={'<head>': True}, or per survey with "
        "source_exhaustive), give the table <head>_mask columns listing the unknown nodes, or, if you "
        "mean it, pass --allow_degenerate_heads (check_trainable_heads(..., allow=[...]))."
    )


__all__ = ["DegenerateHeadError", "SUPPORT_KEYS", "check_trainable_heads", "format_label_support", "known_bit_counts",
           "label_support"]
