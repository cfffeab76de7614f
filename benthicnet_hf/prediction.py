"""From coherent node probabilities to predictions per head: paths at a threshold, deepest node.

Per sample and head:

- ``paths``: the most specific predicted nodes: score > threshold and no child scoring above it
  (strictly above: the BenthicNet paper's ``sigmoid > 0.5``, the convention of every metric),
  (keys are full paths for CATAMI trees), by decreasing score;
- ``deepest``: the deepest node whose score clears the threshold (ties: the higher score) —
  "predict the generic class when unsure": when no child of a node clears the threshold, that node
  is the answer; ``None`` when no node of the head does;
- ``score``: the score of ``deepest`` (``None`` with it).

The threshold is one float or one per node (``(N,)``, ``config.node_thresholds``, tuned on the
validation split). The predicted set is closed under ancestors — a predicted node's ancestors are
predicted (the max-constraint on the decisions), which only matters with per-node thresholds (a
child may clear a lower threshold than its parent) or incoherent scores — so paths stay coherent and
``deepest`` is the end of one of ``paths``. Everything is computed for the whole batch at once.

Only what was trained is predicted: with ``trained`` (``config.trained_nodes()``: a positive
training example per node) untrained nodes are never predicted, and a head none of whose nodes was
trained is marked ``"untrained": True`` with no prediction. Classes that mean absence within their
head (``absence``: CATAMI "No visible biota", bedforms "None") are exclusive with the rest of the
head: predicted only when no other node of the head is. :func:`predict_paths_for_config` reads both
from a model config.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import sparse

from .hierarchy import Hierarchy


def _padded_to_csr(padded: np.ndarray) -> sparse.csr_matrix:
    """``(N, K)`` index lists padded with -1 → ``(N, N)`` sparse 0/1 with ``M[row, index] = 1``."""
    row = np.repeat(np.arange(padded.shape[0]), padded.shape[1])
    col = padded.reshape(-1)
    keep = col >= 0
    n = padded.shape[0]
    return sparse.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (row[keep], col[keep])), shape=(n, n))


def child_to_parent_matrix(hierarchy: Hierarchy) -> sparse.csr_matrix:
    """``(N, N)`` sparse 0/1, ``C[child, parent] = 1`` for every edge of every head."""
    return _padded_to_csr(hierarchy.parents_padded)


def self_ancestor_matrix(hierarchy: Hierarchy) -> sparse.csr_matrix:
    """``(N, N)`` sparse 0/1, ``A[node, ancestor] = 1`` for every ancestor of a node, itself included."""
    return _padded_to_csr(hierarchy.ancestors_padded)


def node_threshold_vector(hierarchy: Hierarchy, threshold: Any) -> np.ndarray:
    """A float or ``(N,)`` thresholds → ``(N,)`` float64, checked (a clear error names the shape)."""
    thr = np.asarray(threshold, dtype=np.float64)
    if thr.ndim == 0:
        return np.full(hierarchy.num_nodes, float(thr))
    if thr.shape != (hierarchy.num_nodes,):
        raise ValueError(f"threshold must be a float or one per node, shape ({hierarchy.num_nodes},), got {thr.shape}")
    return thr


def _related(hierarchy: Hierarchy, node: int) -> tuple[np.ndarray, np.ndarray]:
    """(ancestors incl. ``node``, descendants incl. ``node``) of a node, global indices."""
    anc = hierarchy.ancestors_padded[node]
    ptr, idx = hierarchy.descendants_ptr, hierarchy.descendants_idx
    return anc[anc >= 0], idx[ptr[node]:ptr[node + 1]]


def untrained_heads(hierarchy: Hierarchy, trained: Sequence[bool]) -> np.ndarray:
    """``(num_heads,)`` bool: heads none of whose nodes was trained (``trained``: ``(num_nodes,)``)."""
    trained = np.asarray(trained, dtype=bool)
    if trained.shape != (hierarchy.num_nodes,):
        raise ValueError(f"trained must have shape ({hierarchy.num_nodes},), got {trained.shape}")
    return ~np.logical_or.reduceat(trained, hierarchy.offsets[:-1])


def exclusive_absence(hierarchy: Hierarchy, predicted: np.ndarray, absence: Sequence[int]) -> np.ndarray:
    """``(batch, N)`` bool: ``predicted`` with each absence class (and its descendants) switched off
    in the rows where another node of its head, not on its own path, is predicted."""
    out = predicted.copy()
    for a in absence:  # a handful of special classes; the batch stays vectorised
        s = hierarchy.head_slice(int(hierarchy.head_of_node[a]))
        anc, desc = _related(hierarchy, int(a))
        others = out[:, s].copy()
        others[:, np.concatenate([anc, desc]) - s.start] = False
        clash = others.any(axis=1)
        out[np.ix_(clash, desc)] = False
    return out


def predict_paths(hierarchy: Hierarchy, probs: Any, threshold: float | Sequence[float] | np.ndarray = 0.5,
                  trained: Sequence[bool] | None = None,
                  absence: Sequence[int] = ()) -> list[dict[str, dict[str, Any]]]:
    """Per-sample, per-head predictions from node scores.

    Args:
        hierarchy: the label hierarchy (global node layout).
        probs: ``(batch, num_nodes)`` scores in [0, 1] (numpy or torch), normally the model's
            coherent ``probabilities``.
        threshold: a node is predicted when its score is > threshold: one float, or ``(num_nodes,)``
            per-node thresholds; the predictions are then closed under ancestors.
        trained: optional ``(num_nodes,)`` bool, False for nodes without a positive training
            example: never predicted; heads with no trained node are marked ``untrained``.
        absence: global indices of absence classes, exclusive with the rest of their head.

    Returns:
        one dict per sample: ``{head: {"paths": [key, ...], "deepest": key | None,
        "score": float | None, "untrained": bool}}``.
    """
    if hasattr(probs, "detach"):
        probs = probs.detach().float().cpu().numpy()
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != hierarchy.num_nodes:
        raise ValueError(f"probs must have shape (batch, {hierarchy.num_nodes}), got {p.shape}")
    predicted = p > node_threshold_vector(hierarchy, threshold)[None, :]  # (B, N)
    head_untrained = np.zeros(len(hierarchy.heads), dtype=bool)
    if trained is not None:
        head_untrained = untrained_heads(hierarchy, trained)
        predicted &= np.asarray(trained, dtype=bool)[None, :]
    # a child over its (lower) threshold makes its ancestors predicted too: coherent paths
    predicted = np.asarray(predicted.astype(np.float32) @ self_ancestor_matrix(hierarchy)) > 0
    if len(absence):
        predicted = exclusive_absence(hierarchy, predicted, absence)
    # a predicted node with a predicted child is not the end of a path
    has_predicted_child = np.asarray(predicted.astype(np.float32) @ child_to_parent_matrix(hierarchy)) > 0
    most_specific = predicted & ~has_predicted_child

    # deepest predicted node per head: maximise depth, then score (score/2 < 1 keeps depth first)
    rank = np.where(predicted, hierarchy.depth[None, :] + 0.5 * p, -np.inf)
    deepest = np.empty((p.shape[0], len(hierarchy.heads)), dtype=np.int64)
    for h in range(len(hierarchy.heads)):  # a handful of heads; batch and nodes stay vectorised
        s = hierarchy.head_slice(h)
        deepest[:, h] = s.start + rank[:, s].argmax(axis=1)
    found = np.take_along_axis(predicted, deepest, axis=1)

    keys = [k for head in hierarchy.heads for k in head.nodes]
    head_names = hierarchy.head_names
    head_of_node = hierarchy.head_of_node
    out: list[dict[str, dict[str, Any]]] = []
    rows, cols = np.nonzero(most_specific)
    order = np.lexsort((-p[rows, cols], rows))  # by sample, then decreasing score
    rows, cols = rows[order], cols[order]
    bounds = np.searchsorted(rows, np.arange(p.shape[0] + 1))
    for b in range(p.shape[0]):  # building the Python result, one dict per sample
        sample = {
            name: {
                "paths": [],
                "deepest": keys[deepest[b, h]] if found[b, h] else None,
                "score": float(p[b, deepest[b, h]]) if found[b, h] else None,
                "untrained": bool(head_untrained[h]),
            }
            for h, name in enumerate(head_names)
        }
        for j in cols[bounds[b]:bounds[b + 1]]:
            sample[head_names[head_of_node[j]]]["paths"].append(keys[j])
        out.append(sample)
    return out


def predict_paths_for_config(config: Any, probs: Any, threshold: float | None = None
                             ) -> list[dict[str, dict[str, Any]]]:
    """:func:`predict_paths` with the model config's hierarchy, ``trained_nodes()`` and
    ``absence_nodes``; ``threshold=None`` uses ``config.node_thresholds`` (per node, tuned on the
    validation split) when the config has them, else 0.5. A float overrides every node."""
    hierarchy = config.get_hierarchy()
    if threshold is None:
        tuned = getattr(config, "node_thresholds", None)
        threshold = 0.5 if tuned is None else np.asarray(tuned, dtype=np.float64)
    label2id = config.label2id
    return predict_paths(hierarchy, probs, threshold, trained=config.trained_nodes(),
                         absence=[label2id[name] for name in getattr(config, "absence_nodes", None) or ()])
