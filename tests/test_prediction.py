"""predict_paths against a brute-force per-sample, per-node reference."""

from __future__ import annotations

import numpy as np
import pytest

from benthicnet_hf.hierarchy import Taxonomy, Hierarchy
from benthicnet_hf.prediction import predict_paths


def brute_force(hier: Hierarchy, p: np.ndarray, threshold: float, trained=None, absence=()) -> list[dict]:
    """Plain loops: untrained nodes never predicted; an absence class (and its subtree) dropped when
    another node of its head outside its own path is predicted."""
    out = []
    for row in p:
        sample = {}
        for hi, head in enumerate(hier.heads):
            off = int(hier.offsets[hi])
            ok = [trained is None or trained[off + i] for i in range(len(head.nodes))]
            pred = [i for i in range(len(head.nodes)) if row[off + i] > threshold and ok[i]]
            for a in [g - off for g in absence if off <= g < off + len(head.nodes)]:
                path = set(head.ancestors[a]) | set(head.descendants[a])
                if any(i not in path for i in pred):
                    pred = [i for i in pred if i not in head.descendants[a]]
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
                "untrained": trained is not None and not any(ok),
            }
        out.append(sample)
    return out


def coherent(hier: Hierarchy, raw: np.ndarray) -> np.ndarray:
    r = hier.dense_ancestor_matrix()
    return (r[None] * raw[:, None, :]).max(-1)


def dag_hierarchy() -> Hierarchy:
    dag = Taxonomy("go", ("r", "a", "b", "c", "d"), ((), (0,), (0,), (1, 2), (2,)), kind="dag", sep="")
    return Hierarchy((dag, Taxonomy.flat("colour", ["red", "blue"])))


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
    assert got[1]["go"] == {"paths": ["c"], "deepest": "c", "score": 0.65, "untrained": False}
    assert got[1]["colour"]["paths"] == ["red", "blue"]
    assert got[2]["go"] == {"paths": [], "deepest": None, "score": None, "untrained": False}


def test_accepts_torch_and_rejects_wrong_width():
    torch = pytest.importorskip("torch")
    hier = dag_hierarchy()
    p = torch.full((2, hier.num_nodes), 0.7)
    assert predict_paths(hier, p)[0]["go"]["deepest"] == "c"
    with pytest.raises(ValueError, match=r"shape \(batch, 7\), got \(2, 6\)"):
        predict_paths(hier, np.zeros((2, 6)))


def test_untrained_nodes_and_heads_and_exclusive_absence_classes_match_brute_force():
    hier = Hierarchy.catami()
    rng = np.random.default_rng(1)
    p = coherent(hier, rng.random((40, hier.num_nodes)) ** 2)
    # a training split with no colour labels and positives for only some biota/bedforms nodes
    trained = rng.random(hier.num_nodes) < 0.6
    trained[hier.head_slice("colour")] = False
    r = hier.dense_ancestor_matrix()
    trained = (r[:, trained].any(axis=1))  # positives are closed under ancestors
    absence = [hier.index("biota", "No visible biota"), hier.index("bedforms", "None")]
    trained[absence] = True
    got = predict_paths(hier, p, 0.5, trained=trained, absence=absence)
    assert got == brute_force(hier, p, 0.5, trained=trained, absence=absence)
    assert all(row["colour"]["untrained"] and row["colour"]["paths"] == [] for row in got)
    never = {k for i, k in enumerate(hier.labels) if not trained[i]}
    for row in got:
        for head, pred in row.items():
            assert not {f"{head}: {k}" for k in pred["paths"]} & never
            if "No visible biota" in pred["paths"] or (head == "bedforms" and "None" in pred["paths"]):
                assert len(pred["paths"]) == 1  # the absence class stands alone in its head
    # the rule bites: some rows would otherwise predict "No visible biota" beside taxa
    plain = predict_paths(hier, p, 0.5, trained=trained)
    assert any("No visible biota" in row["biota"]["paths"] and len(row["biota"]["paths"]) > 1 for row in plain)
