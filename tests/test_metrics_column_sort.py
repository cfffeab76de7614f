"""Per-node and micro AP on columns long enough for the torch radix-sort path, against sklearn.

Columns of at least ``ranking.TORCH_SORT_MIN`` kept keys are sorted by torch; these tests use
model-like (logit-normal) scores rounded to create ties across both classes, so nearly nothing
falls below the lowest positive and the long columns really take that path.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score

from benthicnet_hf import Taxonomy, Hierarchy
from benthicnet_hf.metrics import compute_metrics, node_average_precision
from benthicnet_hf.metrics.ranking import TORCH_SORT_MIN, single_torch_thread, sort_column_into

ROWS = TORCH_SORT_MIN + 7_000  # every column but the short one exceeds the torch threshold


def _model_like(rows: int = ROWS, nodes: int = 3, seed: int = 0):
    """``(probs float32, targets uint8, mask uint8)``, ``(rows, nodes)``; column 2 mostly unknown."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((rows, nodes)) < 0.2).astype(np.uint8)
    logits = np.where(targets == 1, 2.0, -2.0) + 1.5 * rng.standard_normal((rows, nodes))
    probs = np.round(1 / (1 + np.exp(-logits)), 3).astype(np.float32)  # 3 decimals: many ties
    mask = (rng.random((rows, nodes)) < 0.9).astype(np.uint8)
    mask[: rows - 1000, 2] = 0  # a short column: the numpy path in the same call
    targets &= mask
    return probs, targets, mask


def test_long_columns_node_ap_equal_sklearn():
    probs, targets, mask = _model_like()
    known = mask.astype(bool)
    assert known[:, 0].sum() >= TORCH_SORT_MIN and known[:, 2].sum() < TORCH_SORT_MIN
    expected = [average_precision_score(targets[known[:, j], j], probs[known[:, j], j])
                for j in range(probs.shape[1])]
    np.testing.assert_allclose(node_average_precision(probs, targets, mask), expected, rtol=1e-12)


def test_compute_metrics_micro_and_macro_ap_equal_sklearn_on_long_columns():
    """compute_metrics reuses the torch-sorted columns for micro AP (per head and overall)."""
    probs, targets, mask = _model_like(seed=1)
    hierarchy = Hierarchy((Taxonomy.flat("a", ["x", "y"]), Taxonomy.flat("b", ["z"])))
    out = compute_metrics(probs, targets, mask, hierarchy)
    known = mask.astype(bool)
    for scope, cols in (("overall", slice(0, 3)), ("a", slice(0, 2)), ("b", slice(2, 3))):
        k, t, p = known[:, cols], targets[:, cols], probs[:, cols]
        assert abs(out[f"{scope}/ap_micro"] - average_precision_score(t[k], p[k])) < 1e-12, scope
        per_node = [average_precision_score(t[k[:, j], j], p[k[:, j], j]) for j in range(k.shape[1])]
        assert abs(out[f"{scope}/ap_macro"] - np.mean(per_node)) < 1e-12, scope


def test_sort_column_into_overlapping_destination_equals_numpy_sort():
    rng = np.random.default_rng(2)
    scratch = (torch.empty(TORCH_SORT_MIN + 9, dtype=torch.int32), torch.empty(TORCH_SORT_MIN + 9, dtype=torch.int64))
    for size in (TORCH_SORT_MIN - 1, TORCH_SORT_MIN + 1):  # numpy and torch paths
        for buffers in (None, scratch):
            buffer = rng.integers(1, 2**31 - 1, size + 50, dtype=np.int32)
            expected = np.sort(buffer[50:])
            sort_column_into(buffer[50:], buffer[:size], buffers)  # moved down over the first 50 slots
            np.testing.assert_array_equal(buffer[:size], expected)


def test_single_torch_thread_restores_the_callers_setting():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with single_torch_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
