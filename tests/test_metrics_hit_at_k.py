"""hit@k per level against a brute-force loop over rows, random scores at min(k, n)/n, ties counted against."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benthicnet_hf import Hierarchy
from benthicnet_hf.metrics import level_hit_at_k


def _labelled(hier: Hierarchy, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One random node per row and head with its ancestors; some rows cut short, some heads unknown."""
    rng = np.random.default_rng(seed)
    y = np.zeros((rows, hier.num_nodes), dtype=np.uint8)
    m = np.ones_like(y)
    for head in hier.heads:
        s = hier.head_slice(head.name)
        picks = rng.integers(s.start, s.stop, size=rows)
        for r, node in enumerate(picks):  # test data only: a loop is the reference's way
            path = [a for a in hier.ancestors_padded[node] if a >= 0]  # the node and its ancestors
            y[r, path] = 1
            if rng.random() < 0.2:  # a label cut short: the deepest node's level becomes unknown
                d = hier.depth[node]
                level = [j for j in range(s.start, s.stop) if hier.depth[j] == d]
                y[r, node] = 0
                m[r, level] = 0
            if rng.random() < 0.1:  # the whole head unannotated
                y[r, s] = 0
                m[r, s] = 0
    return y, m


def _brute_force(probs, y, m, hier, k):
    out = {}
    for head in hier.heads:
        s = hier.head_slice(head.name)
        for d in sorted(set(hier.depth[s].tolist())):
            level = [j for j in range(s.start, s.stop) if hier.depth[j] == d]
            hits = []
            for r in range(len(y)):
                true = [j for j in level if y[r, j] and m[r, j]]
                if len(true) != 1:
                    continue
                rank = sum(probs[r, j] >= probs[r, true[0]] for j in level)
                hits.append(rank <= k)
            out[(head.name, d)] = (len(hits), float(np.mean(hits)) if hits else math.nan)
    return out


def test_equals_a_loop_over_rows_with_ties_counted_against():
    hier = Hierarchy.catami().subset(["substrate", "relief", "colour"])
    y, m = _labelled(hier, 300, 0)
    rng = np.random.default_rng(1)
    probs = np.round(rng.random(y.shape), 1)  # coarse scores: many ties
    got = level_hit_at_k(probs, y, m, hier, ks=(1, 2, 5))
    for k in (1, 2, 5):
        ref = _brute_force(probs, y, m, hier, k)
        assert {(e["head"], e["depth"]) for e in got} == set(ref)
        for e in got:
            rows, hit = ref[(e["head"], e["depth"])]
            assert e["rows"] == rows
            assert (math.isnan(hit) and math.isnan(e[f"hit@{k}"])) or e[f"hit@{k}"] == pytest.approx(hit, abs=1e-12)


def test_random_scores_land_at_k_over_n_and_constant_scores_never_hit_a_larger_level():
    hier = Hierarchy.catami().subset(["substrate"])
    y, m = _labelled(hier, 20000, 2)
    rng = np.random.default_rng(3)
    for e in level_hit_at_k(rng.random(y.shape), y, m, hier, ks=(1, 3)):
        if e["rows"] < 500:
            continue
        for k in (1, 3):
            assert e[f"hit@{k}"] == pytest.approx(min(k, e["nodes"]) / e["nodes"], abs=0.03), e
    for e in level_hit_at_k(np.full(y.shape, 0.5), y, m, hier, ks=(1,)):
        assert e["hit@1"] == (1.0 if e["nodes"] == 1 else 0.0) or e["rows"] == 0, e


def test_perfect_scores_hit_every_level_and_bad_input_is_refused():
    hier = Hierarchy.catami().subset(["substrate"])
    y, m = _labelled(hier, 200, 4)
    probs = 0.1 + 0.8 * (y * m)  # the true path above every other node
    assert all(e["hit@1"] == 1.0 for e in level_hit_at_k(probs, y, m, hier) if e["rows"])
    with pytest.raises(ValueError, match="columns"):
        level_hit_at_k(probs[:, :-1], y[:, :-1], m[:, :-1], hier)
    with pytest.raises(ValueError, match="k must be >= 1"):
        level_hit_at_k(probs, y, m, hier, ks=(0,))
