"""The fast paths of the ranking metrics against independent references (sklearn, brute force).

The AP code drops every item scored below the lowest known positive before sorting (it can
never count); these tests make that drop large, with ties exactly at the floor, and compare
with sklearn on the full masked arrays.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from benthicnet_hf import Taxonomy, Hierarchy
from benthicnet_hf.metrics import compute_metrics, micro_average_precision, node_average_precision
from benthicnet_hf.metrics.inputs import min_positive_key, ranking_keys, score_codes
from benthicnet_hf.metrics.paper import _dense_ids
from benthicnet_hf.metrics.ranking import even_positions


@pytest.fixture(scope="module")
def hierarchy() -> Hierarchy:
    tree = Taxonomy.from_paths("substrate", ["A > B > C", "A > B > D", "A > E", "F > G", "F > H > I"])
    return Hierarchy((tree, Taxonomy.flat("colour", ["red", "green", "blue"])))


def _floored_data(hierarchy: Hierarchy, rows: int = 500, seed: int = 0):
    """Positives scored in [0.4, 1], most negatives below 0.4, some tied with the lowest positive."""
    rng = np.random.default_rng(seed)
    n = hierarchy.num_nodes
    targets = (rng.random((rows, n)) < 0.3).astype(np.uint8)
    mask = (rng.random((rows, n)) < 0.8).astype(np.uint8)
    probs = np.where(targets == 1, np.round(0.4 + 0.6 * rng.random((rows, n)), 2),
                     np.round(0.6 * rng.random((rows, n)) ** 2, 2)).astype(np.float32)
    probs[rng.random((rows, n)) < 0.05] = np.float32(0.4)  # ties at the floor, both classes
    return probs, targets, mask


def _sklearn_node_ap(probs, targets, known) -> np.ndarray:
    out = np.full(probs.shape[1], np.nan)
    for j in range(probs.shape[1]):
        t, p = targets[known[:, j], j], probs[known[:, j], j]
        if t.any() and not t.all():
            out[j] = average_precision_score(t, p)
    return out


def test_floor_drops_many_items(hierarchy):
    probs, targets, mask = _floored_data(hierarchy)
    known = mask.astype(bool)
    positive = targets.astype(bool) & known
    floor = min_positive_key(probs, targets.astype(bool), known)
    assert floor == ranking_keys(np.float32([[0.4]]), np.ones((1, 1), bool), np.ones((1, 1), bool))[0, 0]
    below = known & ~positive & (probs < np.float32(0.4))
    assert below.sum() > 0.4 * known.sum()  # the path under test really drops items


def test_node_and_micro_ap_equal_sklearn_with_floor(hierarchy):
    probs, targets, mask = _floored_data(hierarchy)
    known = mask.astype(bool)
    np.testing.assert_allclose(node_average_precision(probs, targets, mask),
                               _sklearn_node_ap(probs, targets, known), rtol=0, atol=1e-12)
    assert micro_average_precision(probs, targets, mask) == pytest.approx(
        average_precision_score(targets[known], probs[known]), abs=1e-12)


def test_compute_metrics_ap_equal_sklearn_with_floor(hierarchy):
    probs, targets, mask = _floored_data(hierarchy, seed=1)
    known = mask.astype(bool)
    out = compute_metrics(probs, targets, mask, hierarchy, chunk_rows=37)
    assert out["overall/ap_micro"] == pytest.approx(average_precision_score(targets[known], probs[known]), abs=1e-12)
    node_ap = _sklearn_node_ap(probs, targets, known)
    assert out["overall/ap_macro"] == pytest.approx(np.nanmean(node_ap), abs=1e-12)
    for i, head in enumerate(hierarchy.heads):
        s = hierarchy.head_slice(i)
        k = known[:, s]
        assert out[f"{head.name}/ap_micro"] == pytest.approx(
            average_precision_score(targets[:, s][k], probs[:, s][k]), abs=1e-12)


def test_min_positive_key_is_the_brute_force_minimum():
    rng = np.random.default_rng(2)
    probs = rng.random((300, 7))
    targets, known = rng.random((300, 7)) < 0.2, rng.random((300, 7)) < 0.7
    positive = targets & known
    keys = ranking_keys(probs, positive, known)  # float64 scores: dense codes
    codes = score_codes(probs)
    assert min_positive_key(probs, targets, known, codes.copy()) == keys[positive].min()
    f32 = probs.astype(np.float32)
    assert min_positive_key(f32, targets, known, block=16) == ranking_keys(f32, positive, known)[positive].min()
    assert min_positive_key(f32, np.zeros_like(targets), known) == 2  # no positive: keep every known key


def test_even_positions_blocked_equals_flatnonzero():
    keys = np.random.default_rng(3).integers(1, 2**31 - 1, 100_003, dtype=np.int32)
    np.testing.assert_array_equal(even_positions(keys, block=4096), np.flatnonzero(keys % 2 == 0))


@pytest.mark.parametrize("width", [1, 2, 4])
def test_dense_ids_group_equal_rows(width):
    rng = np.random.default_rng(width)
    words = rng.integers(0, 3, (2000, width)).astype(np.int64) << 40 | rng.integers(0, 2, (2000, width))
    ids = _dense_ids(words)
    reference = np.unique(words, axis=0, return_inverse=True)[1].reshape(-1)
    same = ids[:, None] == ids[None, :]
    np.testing.assert_array_equal(same, reference[:, None] == reference[None, :])
    assert ids.min() == 0 and ids.max() < words.shape[0]
