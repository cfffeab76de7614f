"""hit@k per hierarchy level: is a row's one true node of a level among that level's k best scores?

For a head and a depth ``d``, the rows that count are those with exactly one known positive among
the head's nodes of depth ``d`` (a single path reaching that depth; a label cut short above ``d``
has none there and is left out). A row's **rank** is the number of the level's nodes scored ``>=``
its true node (ties counted against it, so constant scores reach hit@1 only on a one-node level);
hit@k is the share of counted rows with ``rank <= k``. Every node of the level is ranked whatever
the mask: a prediction does not know which siblings were annotated. Random scores give
``min(k, n) / n`` on a level of ``n`` nodes. This is the order-embedding study's "least-violating
energy" reading of a label ranking (ETHEC), and the demo figures of ``docs/embeddings.md``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .inputs import check_metric_inputs

__all__ = ["level_hit_at_k"]


def level_hit_at_k(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None, hierarchy: Any,
                   ks: Sequence[int] = (1, 3)) -> list[dict[str, Any]]:
    """hit@k of every (head, depth) level.

    Args:
        probs: ``(rows, N)`` scores in [0, 1] (coherent probabilities).
        targets: ``(rows, N)`` 0/1 with ancestors set.
        mask: ``(rows, N)`` 1 = known (None: all known).
        hierarchy: the :class:`~benthicnet_hf.Hierarchy` of the ``N`` columns.
        ks: the k values.

    Returns:
        one dict per level, heads in order and depths ascending: ``head``, ``depth``, ``nodes``
        (the level's size), ``rows`` (rows counted) and ``hit@k`` for each k (NaN with no row).
    """
    probs, targets, mask = check_metric_inputs(probs, targets, mask)
    if probs.shape[1] != hierarchy.num_nodes:
        raise ValueError(f"probs has {probs.shape[1]} columns, the hierarchy {hierarchy.num_nodes} nodes")
    if any(int(k) < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {list(ks)}")
    known_pos = targets & mask
    out = []
    for head in hierarchy.heads:  # a handful of heads x depths; rows stay vectorised
        s = hierarchy.head_slice(head.name)
        depth = np.asarray(hierarchy.depth[s])
        for d in np.unique(depth):
            cols = s.start + np.flatnonzero(depth == d)
            pos = known_pos[:, cols]
            rows = np.flatnonzero(pos.sum(1) == 1)
            scores = probs[rows][:, cols]
            true_score = scores[np.arange(len(rows)), pos[rows].argmax(1)]
            rank = (scores >= true_score[:, None]).sum(1)
            entry: dict[str, Any] = {"head": head.name, "depth": int(d), "nodes": len(cols), "rows": len(rows)}
            for k in ks:
                entry[f"hit@{int(k)}"] = float((rank <= int(k)).mean()) if len(rows) else float("nan")
            out.append(entry)
    return out
