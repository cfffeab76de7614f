"""predict_paths against a brute-force per-sample, per-node reference."""

from __future__ import annotations

import numpy as np
import pytest

from benthicnet_hf.hierarchy import Head, Hierarchy
from benthicnet_hf.prediction import predict_paths


def brute_force(hier: Hierarchy, p: np.ndarray, threshold: float) -> list[dict]:
    out = []
    for row in p:
        sample = {}
        for hi, head in enumerate(hier.heads):
            off = int(hier.offsets[hi])
            pred = [i for i in range(len(head.nodes)) if row[off + i] >= threshold]
            ends = [i for i in pred if not any(c in pred for c in head.children[i])]
            ends.sort(key=lambda i: -row[off + i])
            best = None
            for i in pred:
                if best is None or (head.depth[i], row[off + i]) > (head.depth[best], row[off + best]):
                    best = i
            sample[head.name] = {
                "paths": [head.nodes[i] for i in ends],
                "deepest": None if best is None else head.nodes[best],
                "score": None if best is None else float(row[off + best]),
            }
        out.append(sample)
    return out


def coherent(hier: Hierarchy, raw: np.ndarray) -> np.ndarray:
    r = hier.dense_ancestor_matrix()
    return (r[None] * raw[:, None, :]).max(-1)


def dag_hierarchy() -> Hierarchy:
    dag = Head("go", ("r", "a", "b", "c", "d"), ((), (0,), (0,), (1, 2), (2,)), kind="dag", sep="")
    return Hierarchy((dag, Head.flat("colour", ["red", "blue"])))


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_matches_brute_force_on_catami(threshold):
    hier = Hierarchy.catami()
    rng = np.random.default_rng(0)
    raw = rng.random((6, hier.num_nodes)) ** 3  # sparse-ish high scores
    p = coherent(hier, raw)
    assert predict_paths(hier, p, threshold) == brute_force(hier, p, threshold)


def test_matches_brute_force_on_dag_and_unsure_gives_generic_class():
    hier = dag_hierarchy()
    p = np.array([
        [0.9, 0.6, 0.7, 0.4, 0.45, 0.1, 0.2],   # unsure about c, d → deepest stops at depth 2 (b, higher)
        [0.9, 0.8, 0.7, 0.65, 0.1, 0.9, 0.6],   # c (depth 3) clears the threshold
        [0.2, 0.1, 0.1, 0.1, 0.1, 0.4, 0.3],    # nothing predicted
    ])
    got = predict_paths(hier, p, 0.5)
    assert got == brute_force(hier, p, 0.5)
    assert got[0]["go"]["deepest"] == "b" and got[0]["go"]["paths"] == ["b", "a"]
    assert got[1]["go"] == {"paths": ["c"], "deepest": "c", "score": 0.65}
    assert got[1]["colour"]["paths"] == ["red", "blue"]
    assert got[2]["go"] == {"paths": [], "deepest": None, "score": None}


def test_accepts_torch_and_rejects_wrong_width():
    torch = pytest.importorskip("torch")
    hier = dag_hierarchy()
    p = torch.full((2, hier.num_nodes), 0.7)
    assert predict_paths(hier, p)[0]["go"]["deepest"] == "c"
    with pytest.raises(ValueError, match=r"shape \(batch, 7\), got \(2, 6\)"):
        predict_paths(hier, np.zeros((2, 6)))
