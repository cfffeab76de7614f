"""Per-node results as a table: known test positives/negatives, AP and F1 of every node.

The table behind ``per_node_metrics.csv``: one row per node in hierarchy (global index) order, so
a reader sees which nodes a head's macro figures cover and which could not be scored (NaN: no
known positive or no known negative among the evaluated rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..hierarchy import Hierarchy
from .average_precision import node_average_precision
from .f1 import confusion_counts
from .inputs import check_metric_inputs

PER_NODE_COLUMNS = ("head", "node", "depth", "positives", "negatives", "ap", "f1")


def per_node_table(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None, hierarchy: Hierarchy,
                   threshold: float = 0.5) -> pd.DataFrame:
    """One row per node: ``head, node, depth, positives, negatives, ap, f1``.

    Args:
        probs: ``(rows, hierarchy.num_nodes)`` coherent probabilities.
        targets: ``(rows, num_nodes)`` {0, 1}; mask: same shape, 1 = known (None = all known).
        threshold: F1 predicts ``probs > threshold`` (strict, as every thresholded metric here).

    ``positives``/``negatives`` count the known bits of the node; ``ap`` is sklearn's average
    precision over the node's known rows and ``f1`` the binary F1 there, both NaN unless the node
    has a known positive and a known negative. ``node`` is the node's key (its path in trees).
    """
    probs, targets, mask = check_metric_inputs(probs, targets, mask)
    if probs.shape[1] != hierarchy.num_nodes:
        raise ValueError(f"probs has {probs.shape[1]} columns but the hierarchy has {hierarchy.num_nodes} nodes")
    tp, fp, fn, tn = confusion_counts(probs > threshold, targets, mask, axis=0)
    positives, negatives = tp + fn, fp + tn
    scorable = (positives > 0) & (negatives > 0)
    f1 = np.where(scorable, 2 * tp / np.maximum(2 * tp + fp + fn, 1), np.nan)
    head_of = np.asarray(hierarchy.head_of_node)
    keys = [key for head in hierarchy.heads for key in head.nodes]
    return pd.DataFrame({
        "head": np.asarray(hierarchy.head_names, dtype=object)[head_of],
        "node": keys,
        "depth": np.asarray(hierarchy.depth, dtype=np.int64),
        "positives": positives.astype(np.int64),
        "negatives": negatives.astype(np.int64),
        "ap": node_average_precision(probs, targets, mask),
        "f1": f1,
    }, columns=list(PER_NODE_COLUMNS))
