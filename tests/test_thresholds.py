"""Per-node thresholds: tuning against sklearn/brute force, their use in predict_paths, the config and the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import f1_score, precision_recall_curve, precision_score, recall_score

from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
from benthicnet_hf.hierarchy import Hierarchy, Taxonomy
from benthicnet_hf.prediction import predict_paths, predict_paths_for_config
from benthicnet_hf.training.calibrate import (FEW_POSITIVES, NO_NEGATIVES, TUNED, UNREACHED, parse_tune_thresholds,
                                              tune_node_thresholds)


def random_split(seed: int, rows: int = 70, nodes: int = 9, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = (rng.random((rows, nodes)) < rng.uniform(0.15, 0.6, nodes)).astype(np.uint8)
    p = 0.6 * rng.random((rows, nodes)) + 0.4 * y * rng.random((rows, nodes))  # informative, overlapping
    if ties:  # many equal scores: a cut may never split a run of ties
        p = np.maximum(np.round(p, 1), 0.05)  # no exact 0: "p > t" cannot predict a score of 0 (t >= 0)
    mask = (rng.random((rows, nodes)) < 0.75).astype(np.uint8)
    return p, y, mask


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True)])
def test_f1_optimal_threshold_matches_a_brute_force_scan(seed: int, ties: bool) -> None:
    p, y, mask = random_split(seed, ties=ties)
    tuning = tune_node_thresholds(p, y, mask, min_positives=1)
    for j in range(p.shape[1]):
        k = mask[:, j].astype(bool)
        yj, pj = y[k, j], p[k, j]
        assert tuning.status[j] == TUNED
        # every possible cut: predict the scores >= each distinct known score
        best = max(f1_score(yj, pj >= u, zero_division=0) for u in np.unique(pj))
        got = f1_score(yj, pj > tuning.thresholds[j], zero_division=0)
        assert got == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("seed,target", [(3, 0.6), (4, 0.8), (5, 0.5)])
def test_target_precision_threshold_matches_sklearn_precision_recall_curve(seed: int, target: float) -> None:
    p, y, mask = random_split(seed, rows=90, ties=seed == 4)
    tuning = tune_node_thresholds(p, y, mask, target_precision=target, default=0.5, min_positives=1)
    reached = 0
    for j in range(p.shape[1]):
        k = mask[:, j].astype(bool)
        precision, recall, _ = precision_recall_curve(y[k, j], p[k, j])
        ok = precision[:-1] >= target  # the last point (recall 0) has no threshold
        if not ok.any():
            assert tuning.status[j] == UNREACHED and tuning.thresholds[j] == 0.5
            continue
        reached += 1
        pred = p[k, j] > tuning.thresholds[j]
        assert precision_score(y[k, j], pred) >= target
        assert recall_score(y[k, j], pred) == pytest.approx(recall[:-1][ok].max(), abs=1e-12)
    assert reached >= 3  # the test exercises tuned nodes, not only the fallback


def test_only_known_bits_count_and_thin_nodes_keep_the_default() -> None:
    p, y, mask = random_split(6)
    base = tune_node_thresholds(p, y, mask, min_positives=1)
    noisy = np.where(mask.astype(bool), p, 1 - p)  # unknown bits' scores must not matter
    flipped = np.where(mask.astype(bool), y, 1 - y)
    again = tune_node_thresholds(noisy, flipped, mask, min_positives=1)
    np.testing.assert_array_equal(base.thresholds, again.thresholds)

    y2, m2 = y.copy(), mask.copy()
    m2[:, 0] = 0
    m2[:3, 0] = 1
    y2[:3, 0] = [1, 1, 0]  # 2 known positives
    m2[:, 1], y2[:, 1] = 1, 1  # every known bit positive: no negative
    t = tune_node_thresholds(p, y2, m2, default=0.42, min_positives=3)
    assert t.status[0] == FEW_POSITIVES and t.thresholds[0] == 0.42
    assert t.status[1] == NO_NEGATIVES and t.thresholds[1] == 0.42
    assert t.counts[FEW_POSITIVES] >= 1 and "keep 0.42" in t.summary()


def test_parse_tune_thresholds() -> None:
    assert parse_tune_thresholds("f1") == ("f1", None)
    assert parse_tune_thresholds("precision:0.9") == ("precision", 0.9)
    assert parse_tune_thresholds("none") == ("none", None)
    for bad in ("precision", "precision:1.5", "recall:0.9", "F1"):
        with pytest.raises(ValueError, match="--tune_thresholds"):
            parse_tune_thresholds(bad)


def small_tree() -> Hierarchy:
    #        r          s
    #      a   b        t
    #     c d
    tree = Taxonomy("t", ("r", "a", "b", "c", "d", "s", "t2"), ((), (0,), (0,), (1,), (1,), (), (5,)), sep="")
    flat = Taxonomy("f", ("x", "y", "z"), ((), (), ()), kind="flat", sep="")
    return Hierarchy((tree, flat))


def brute_force_vector(hier: Hierarchy, p: np.ndarray, thr: np.ndarray) -> list[dict]:
    """Plain loops: a node is predicted when it or one of its descendants clears its own threshold."""
    out = []
    for row in p:
        sample = {}
        for hi, head in enumerate(hier.heads):
            off = int(hier.offsets[hi])
            n = len(head.nodes)
            pred = [i for i in range(n) if any(row[off + d] > thr[off + d] for d in head.descendants[i])]
            ends = sorted((i for i in pred if not any(c in pred for c in head.children[i])), key=lambda i: -row[off + i])
            best = None
            for i in pred:
                if best is None or (head.depth[i], row[off + i]) > (head.depth[best], row[off + best]):
                    best = i
            sample[head.name] = {"paths": [head.nodes[i] for i in ends],
                                 "deepest": None if best is None else head.nodes[best],
                                 "score": None if best is None else float(row[off + best]), "untrained": False}
        out.append(sample)
    return out


def test_predict_paths_with_per_node_thresholds_matches_brute_force_and_stays_coherent() -> None:
    hier = small_tree()
    rng = np.random.default_rng(7)
    raw = rng.random((30, hier.num_nodes))
    p = (hier.dense_ancestor_matrix()[None] * raw[:, None, :]).max(-1)  # coherent: parent = max of subtree
    thr = rng.uniform(0.2, 0.9, hier.num_nodes)
    assert predict_paths(hier, p, thr) == brute_force_vector(hier, p, thr)

    # a child over its low threshold under a parent below its high one: the parent is predicted too
    one = np.zeros((1, hier.num_nodes))
    one[0, [0, 1, 3]] = [0.5, 0.5, 0.4]
    t = np.full(hier.num_nodes, 0.9)
    t[3] = 0.3
    got = predict_paths(hier, one, t)[0]["t"]
    assert got["paths"] == ["c"] and got["deepest"] == "c"
    assert predict_paths(hier, one, 0.45)[0]["t"]["paths"] == ["a"]  # the scalar rule is unchanged
    with pytest.raises(ValueError, match="one per node"):
        predict_paths(hier, one, np.full(3, 0.5))


def test_predict_paths_for_config_reads_node_thresholds_and_config_validates_them() -> None:
    hier = small_tree()
    thr = np.linspace(0.1, 0.9, hier.num_nodes)
    config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=hier.to_list(), node_thresholds=thr.tolist())
    p = np.random.default_rng(8).random((5, hier.num_nodes))
    assert predict_paths_for_config(config, p) == predict_paths(hier, p, thr)
    assert predict_paths_for_config(config, p, 0.5) == predict_paths(hier, p, 0.5)  # a float overrides
    restored = BenthicNetConfig.from_dict(config.to_dict())
    assert restored.node_thresholds == pytest.approx(thr.tolist())
    with pytest.raises(ValueError, match="10 nodes"):
        BenthicNetConfig(encoder_name="test_resnet", hierarchy=hier.to_list(), node_thresholds=[0.5] * 3)
    bad = [0.5] * hier.num_nodes
    bad[4] = 1.5
    with pytest.raises(ValueError, match=r"node_thresholds\[4\] \(t: d\)"):
        BenthicNetConfig(encoder_name="test_resnet", hierarchy=hier.to_list(), node_thresholds=bad)


def test_pipeline_predicted_only_lists_the_nodes_over_their_thresholds_and_their_ancestors() -> None:
    from transformers import pipeline

    from benthicnet_hf.image_processing import make_image_processor
    from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification
    from benthicnet_hf.pipeline_benthicnet import BenthicNetImageClassificationPipeline

    hier = small_tree()
    torch.manual_seed(0)
    config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=hier.to_list(), head_hidden_dim=0,
                              image_size=32)
    model = BenthicNetForHierarchicalClassification(config).eval()
    image = Image.fromarray(np.random.default_rng(9).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    processor = make_image_processor(config)
    with torch.no_grad():
        probs = model(**processor(image, return_tensors="pt")).probabilities[0].numpy()
    thr = np.where(np.arange(hier.num_nodes) % 2 == 0, 0.99, 0.01)  # children often below parents' bars
    model.config.node_thresholds = thr.tolist()
    pipe = pipeline("image-classification", model=model, image_processor=processor,
                    pipeline_class=BenthicNetImageClassificationPipeline)
    got = {d["label"] for d in pipe(image, top_k=hier.num_nodes, predicted_only=True)}
    paths = predict_paths(hier, probs[None], thr)[0]
    want = set()
    for head, pred in paths.items():
        for key in pred["paths"]:
            anc = hier.ancestors_padded[hier.index(head, key)]
            want |= {hier.labels[a] for a in anc[anc >= 0]}
    assert got == want and got
    assert len(pipe(image, top_k=hier.num_nodes)) == hier.num_nodes  # default: every node, as before
