"""Metrics against independent references: sklearn on the same masked arrays, brute-force loops."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, precision_recall_fscore_support

from benthicnet_hf import Taxonomy, Hierarchy
from benthicnet_hf.metrics import (
    accuracy,
    bit_f1,
    compute_metrics,
    exact_match,
    f1_scores,
    format_metrics_table,
    level_scores,
    micro_average_precision,
    node_average_precision,
    prior_probabilities,
    sample_average_precision,
    singular_f1,
    thresholded_average_precision,
)


@pytest.fixture(scope="module")
def hierarchy() -> Hierarchy:
    tree = Taxonomy.from_paths("substrate", ["A > B > C", "A > B > D", "A > E", "F > G", "F > H > I"])
    return Hierarchy((tree, Taxonomy.flat("colour", ["red", "green", "blue"])))


def _data(hierarchy: Hierarchy, rows: int = 400, seed: int = 0, decimals: int = 2):
    rng = np.random.default_rng(seed)
    n = hierarchy.num_nodes
    probs = np.round(rng.random((rows, n)), decimals).astype(np.float32)  # rounding -> many ties
    targets = (rng.random((rows, n)) < 0.35).astype(np.uint8)
    mask = (rng.random((rows, n)) < 0.75).astype(np.uint8)
    mask[:7] = 0  # fully unknown rows must not count anywhere
    return probs, targets, mask


def test_micro_macro_and_node_ap_equal_sklearn(hierarchy):
    probs, targets, mask = _data(hierarchy)
    known = mask.astype(bool)
    assert micro_average_precision(probs, targets, mask) == pytest.approx(
        average_precision_score(targets[known], probs[known]), abs=1e-12)
    per_node = node_average_precision(probs, targets, mask)
    for j in range(probs.shape[1]):
        k = known[:, j]
        t, p = targets[k, j], probs[k, j]
        if t.any() and not t.all():
            assert per_node[j] == pytest.approx(average_precision_score(t, p), abs=1e-12)
        else:
            assert np.isnan(per_node[j])


def test_sample_ap_per_depth_equals_sklearn_per_row(hierarchy):
    probs, targets, mask = _data(hierarchy, rows=250, seed=1)
    depth = hierarchy.depth
    got = sample_average_precision(probs, targets, mask, depth)
    unrestricted = sample_average_precision(probs, targets, mask)[:, 0]
    known = mask.astype(bool)
    for r in range(probs.shape[0]):
        for d in range(got.shape[1]):
            cols = known[r] & (depth <= d + 1)
            if targets[r, cols].sum() == 0 or targets[r, cols].all():  # needs both known classes
                assert np.isnan(got[r, d])
            else:
                assert got[r, d] == pytest.approx(average_precision_score(targets[r, cols], probs[r, cols]), abs=1e-12)
        cols = known[r]
        if targets[r, cols].sum() and not targets[r, cols].all():
            ref = average_precision_score(targets[r, cols], probs[r, cols])
            assert unrestricted[r] == pytest.approx(ref, abs=1e-12)


def test_float64_scores_keep_exact_order_and_ties(hierarchy):
    probs, targets, mask = _data(hierarchy, seed=2)
    probs64 = probs.astype(np.float64) + np.random.default_rng(0).random(probs.shape) * 1e-12
    probs64 = np.clip(probs64, 0, 1)
    known = mask.astype(bool)
    assert micro_average_precision(probs64, targets, mask) == pytest.approx(
        average_precision_score(targets[known], probs64[known]), abs=1e-12)


def test_thresholded_ap_equals_sklearn_on_binary_predictions(hierarchy):
    probs, targets, mask = _data(hierarchy, seed=3)
    known = mask.astype(bool)
    binary = (probs > 0.5).astype(np.float64)  # strict, as the paper
    got = thresholded_average_precision(probs, targets, mask, 0.5)
    assert got["ap_micro_thresholded"] == pytest.approx(average_precision_score(targets[known], binary[known]))
    ref = [average_precision_score(targets[known[:, j], j], binary[known[:, j], j]) for j in range(probs.shape[1])]
    assert got["ap_macro_thresholded"] == pytest.approx(np.mean(ref))


def test_f1_bit_f1_exact_match_and_levels_equal_references(hierarchy):
    probs, targets, mask = _data(hierarchy, seed=4)
    pred, t, m = probs > 0.5, targets.astype(bool), mask.astype(bool)
    t[:, 0] = m[:, 0]  # node 0: no known negative, so it cannot count in the macro figures
    got = f1_scores(pred, t, m)
    assert got["f1_micro"] == pytest.approx(f1_score(t[m], pred[m]))
    cols = [j for j in range(t.shape[1]) if t[m[:, j], j].any() and not t[m[:, j], j].all()]
    assert 0 not in cols
    prf = [precision_recall_fscore_support(t[m[:, j], j], pred[m[:, j], j], average="binary", zero_division=0)
           for j in cols]
    assert got["precision_macro"] == pytest.approx(np.mean([x[0] for x in prf]))
    assert got["recall_macro"] == pytest.approx(np.mean([x[1] for x in prf]))
    assert got["f1_macro"] == pytest.approx(np.mean([x[2] for x in prf]))

    per_row = bit_f1(pred, t, m)
    depth = hierarchy.depth
    em = exact_match(pred, t, m, depth)
    for r in range(t.shape[0]):
        k = m[r]
        if not t[r, k].any() or t[r, k].all():  # without both known classes a row is not scored
            assert np.isnan(per_row[r])
            continue
        ref = (f1_score(t[r, k], pred[r, k], pos_label=1, zero_division=1.0)
               + f1_score(t[r, k], pred[r, k], pos_label=0, zero_division=1.0)) / 2
        assert per_row[r] == pytest.approx(ref)
        for d in range(em.shape[1]):
            kd = k & (depth == d + 1)
            assert (np.isnan(em[r, d]) if not kd.any() else em[r, d] == float((pred[r, kd] == t[r, kd]).all()))

    levels = level_scores(pred, t, m, depth)
    for d in range(1, int(depth.max()) + 1):
        kd = m & (depth == d)[None, :]
        assert levels[f"level{d}/f1_micro"] == pytest.approx(f1_score(t[kd], pred[kd]))


def _singular_f1_reference(pred, targets, mask, depth):
    """The notebook's procedure, sample by sample with dictionaries (BenthicNet test_depth.ipynb)."""
    f1s, counts = [], []
    for d in range(1, int(depth.max()) + 1):
        tp, fp, fn, cnt = {}, {}, {}, {}
        for r in range(targets.shape[0]):
            tgts = {j for j in range(targets.shape[1]) if targets[r, j] and mask[r, j] and depth[j] == d}
            if not tgts:
                continue
            preds = {j for j in range(targets.shape[1]) if pred[r, j] and mask[r, j] and depth[j] == d}
            for j in tgts:
                cnt[j] = cnt.get(j, 0) + 1
                hit = j in preds
                tp[j], fn[j] = tp.get(j, 0) + hit, fn.get(j, 0) + (not hit)
                fp.setdefault(j, 0)
            for j in preds - tgts:
                fp[j] = fp.get(j, 0) + 1
                tp.setdefault(j, 0), fn.setdefault(j, 0)
        if not tp:
            continue
        node_f1 = []
        for j in tp:
            p = tp[j] / (tp[j] + fp[j]) if tp[j] + fp[j] else 0
            rcl = tp[j] / (tp[j] + fn[j]) if tp[j] + fn[j] else 0
            node_f1.append(2 * p * rcl / (p + rcl) if p + rcl else 0)
        f1s.append(np.mean(node_f1))
        counts.append(sum(cnt.values()))
    return float(np.dot(f1s, counts) / np.sum(counts))


def test_singular_f1_follows_the_papers_procedure(hierarchy):
    probs, targets, mask = _data(hierarchy, seed=5)
    s = hierarchy.head_slice("substrate")
    pred = probs[:, s] > 0.5
    got = singular_f1(pred, targets[:, s], mask[:, s], hierarchy.depth[s])["singular_f1"]
    assert got == pytest.approx(_singular_f1_reference(pred, targets[:, s], mask[:, s], hierarchy.depth[s]))


def test_one_hot_accuracy_and_singular_f1_equal_sklearn():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 5, 300)
    probs = rng.random((300, 5)).astype(np.float32)
    onehot = np.eye(5, dtype=np.uint8)[y]
    y_pred = probs.argmax(1)
    assert accuracy(probs, onehot) == pytest.approx(accuracy_score(y, y_pred))
    pred = np.eye(5, dtype=bool)[y_pred]
    got = singular_f1(pred, onehot, np.ones_like(onehot))["singular_f1"]
    assert got == pytest.approx(f1_score(y, y_pred, average="macro"))


def test_compute_metrics_per_head_overall_and_table(hierarchy):
    probs, targets, mask = _data(hierarchy, seed=7)
    out = compute_metrics(probs, targets, mask, hierarchy)
    known = mask.astype(bool)
    for i, name in enumerate(["substrate", "colour"]):
        s = hierarchy.head_slice(i)
        k, t, p = known[:, s], targets[:, s], probs[:, s]
        assert out[f"{name}/ap_micro"] == pytest.approx(average_precision_score(t[k], p[k]))
        assert out[f"{name}/num_samples"] == k.any(axis=1).sum()
    assert out["overall/ap_micro"] == pytest.approx(average_precision_score(targets[known], probs[known]))
    assert "substrate/sample_ap@d3" in out and "overall/level2/f1_macro" in out
    # the fused per-group computation agrees with the sklearn-checked single-scope functions
    s = hierarchy.head_slice("substrate")
    pred, t, m = probs[:, s] > 0.5, targets[:, s].astype(bool), known[:, s]
    assert out["substrate/bit_f1"] == pytest.approx(np.nanmean(bit_f1(pred, t, m)))
    em = exact_match(pred, t, m, hierarchy.depth[s])
    for d in range(em.shape[1]):
        assert out[f"substrate/exact_match@d{d + 1}"] == pytest.approx(np.nanmean(em[:, d]))
    assert out["overall/f1_micro"] == pytest.approx(f1_score(targets[known], probs[known] > 0.5))
    lv = level_scores(probs > 0.5, targets.astype(bool), known, hierarchy.depth)
    assert out["overall/level2/f1_macro"] == pytest.approx(lv["level2/f1_macro"])
    prior = prior_probabilities(targets, mask)
    assert prior[0] == pytest.approx(targets[known[:, 0], 0].mean())
    base = compute_metrics(np.broadcast_to(prior, probs.shape).astype(np.float32), targets, mask, hierarchy)
    table = format_metrics_table(out, base)
    assert table.splitlines()[0].split()[:3] == ["metric", "overall", "substrate"]
    assert f"{out['overall/ap_micro']:.4f} ({base['overall/ap_micro']:.4f})" in table


def test_one_hot_head_reports_accuracy():
    h = Hierarchy((Taxonomy.flat("substrate5", list("abcde")),))
    y = np.random.default_rng(8).integers(0, 5, 100)
    probs = np.random.default_rng(9).random((100, 5)).astype(np.float32)
    out = compute_metrics(probs, np.eye(5, dtype=np.uint8)[y], None, h)
    assert out["substrate5/accuracy"] == pytest.approx(accuracy_score(y, probs.argmax(1)))


def test_bad_inputs_name_the_culprit(hierarchy):
    probs, targets, mask = _data(hierarchy, rows=10)
    bad = probs.copy()
    bad[3, 2] = 1.5
    with pytest.raises(ValueError, match=r"probs\[3, 2\]"):
        compute_metrics(bad, targets, mask, hierarchy)
    t = targets.copy()
    t[1, 4] = 2
    with pytest.raises(ValueError, match=r"targets\[1, 4\]"):
        compute_metrics(probs, t, mask, hierarchy)
    with pytest.raises(ValueError, match="columns"):
        compute_metrics(probs[:, :5], targets[:, :5], mask[:, :5], hierarchy)


def test_evaluate_module_loads_offline(hierarchy, monkeypatch, tmp_path):
    evaluate = pytest.importorskip("evaluate")
    from benthicnet_hf.evaluate_modules import HML_METRICS_PATH

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    metric = evaluate.load(str(HML_METRICS_PATH))
    probs, targets, mask = _data(hierarchy, rows=60)
    got = metric.compute(predictions=probs, references=targets, mask=mask, hierarchy=hierarchy)
    known = mask.astype(bool)
    assert got["overall/ap_micro"] == pytest.approx(average_precision_score(targets[known], probs[known]))


def _sklearn_sample_ap(probs, targets, known, cols_mask):
    """Mean over rows (with a known positive and a known negative in ``cols_mask``) of sklearn's AP."""
    per_row = []
    for r in range(probs.shape[0]):
        cols = known[r] & cols_mask
        if targets[r, cols].any() and not targets[r, cols].all():
            per_row.append(average_precision_score(targets[r, cols], probs[r, cols]))
    return float(np.mean(per_row))


@pytest.mark.parametrize("chunk_rows", [None, 13])
def test_compute_metrics_rankings_equal_sklearn_for_any_chunking(hierarchy, chunk_rows):
    probs, targets, mask = _data(hierarchy, rows=150, seed=11)
    probs[5, :4] = -0.0  # -0.0 must tie with +0.0
    probs[6, :4] = 0.0
    out = compute_metrics(probs, targets, mask, hierarchy, chunk_rows=chunk_rows)
    known = mask.astype(bool)
    everything = np.ones(hierarchy.num_nodes, dtype=bool)
    assert out["overall/sample_ap"] == pytest.approx(_sklearn_sample_ap(probs, targets, known, everything), abs=1e-12)
    depth, head_of = hierarchy.depth, hierarchy.head_of_node
    for h, name in enumerate(hierarchy.head_names):
        in_head = head_of == h
        for d in range(1, int(depth[in_head].max()) + 1):
            ref = _sklearn_sample_ap(probs, targets, known, in_head & (depth <= d))
            assert out[f"{name}/sample_ap@d{d}"] == pytest.approx(ref, abs=1e-12)
        assert out[f"{name}/sample_ap"] == pytest.approx(_sklearn_sample_ap(probs, targets, known, in_head), abs=1e-12)
        node_ref = [average_precision_score(targets[known[:, j], j], probs[known[:, j], j])
                    for j in np.flatnonzero(in_head) if 0 < targets[known[:, j], j].sum() < known[:, j].sum()]
        assert out[f"{name}/ap_macro"] == pytest.approx(np.mean(node_ref), abs=1e-12)
    assert out["overall/ap_micro"] == pytest.approx(average_precision_score(targets[known], probs[known]), abs=1e-12)


def test_compute_metrics_float64_scores_rank_globally_across_chunks(hierarchy):
    probs, targets, mask = _data(hierarchy, rows=120, seed=12)
    probs64 = np.clip(probs.astype(np.float64) + np.random.default_rng(1).random(probs.shape) * 1e-12, 0, 1)
    known = mask.astype(bool)
    out = compute_metrics(probs64, targets, mask, hierarchy, chunk_rows=10)
    assert out["overall/ap_micro"] == pytest.approx(average_precision_score(targets[known], probs64[known]), abs=1e-12)
    s = hierarchy.head_slice("substrate")
    k, t, p = known[:, s], targets[:, s], probs64[:, s]
    assert out["substrate/ap_micro"] == pytest.approx(average_precision_score(t[k], p[k]), abs=1e-12)


def test_singular_f1_and_accuracy_in_compute_metrics_follow_references(hierarchy):
    probs, targets, mask = _data(hierarchy, rows=200, seed=13)
    out = compute_metrics(probs, targets, mask, hierarchy, chunk_rows=17)
    s = hierarchy.head_slice("substrate")
    pred = probs[:, s] > 0.5
    ref = _singular_f1_reference(pred, targets[:, s], mask[:, s], hierarchy.depth[s])
    assert out["substrate/singular_f1"] == pytest.approx(ref)
    h = Hierarchy((Taxonomy.flat("substrate5", list("abcde")),))
    y = np.random.default_rng(14).integers(0, 5, 90)
    p5 = np.random.default_rng(15).random((90, 5)).astype(np.float32)
    assert compute_metrics(p5, np.eye(5, dtype=np.uint8)[y], None, h, chunk_rows=8)["substrate5/accuracy"] == \
        pytest.approx(accuracy_score(y, p5.argmax(1)))


def test_per_node_table_equals_sklearn(hierarchy):
    from benthicnet_hf.metrics import per_node_table

    probs, targets, mask = _data(hierarchy, rows=120, seed=16)
    targets[:, 1] = mask[:, 1]  # node 1: only known positives -> NaN, never a perfect score
    table = per_node_table(probs, targets, mask, hierarchy, threshold=0.5)
    assert list(table.columns) == ["head", "node", "depth", "positives", "negatives", "ap", "f1"]
    assert list(table["node"]) == [k for h in hierarchy.heads for k in h.nodes]
    known = mask.astype(bool)
    for j, row in table.iterrows():
        t, p = targets[known[:, j], j], probs[known[:, j], j]
        assert (row["positives"], row["negatives"]) == (t.sum(), (1 - t).sum())
        assert row["head"] == hierarchy.head_names[hierarchy.head_of_node[j]]
        if t.any() and not t.all():
            assert row["ap"] == pytest.approx(average_precision_score(t, p), abs=1e-12)
            assert row["f1"] == pytest.approx(f1_score(t, p > 0.5))
        else:
            assert np.isnan(row["ap"]) and np.isnan(row["f1"])
    assert np.isnan(table.loc[1, "ap"])


def test_nodes_without_negatives_leave_every_macro_figure(hierarchy):
    """A node whose known bits are all positive is NaN everywhere, never 1.0 (issue 14)."""
    probs, targets, mask = _data(hierarchy, rows=200, seed=17)
    s = hierarchy.head_slice("substrate")
    targets[:, s.start] = mask[:, s.start]  # node: known positives only
    out = compute_metrics(probs, targets, mask, hierarchy)
    known = mask.astype(bool)
    others = [j for j in range(s.start + 1, s.stop)]
    thr = [average_precision_score(targets[known[:, j], j], (probs[known[:, j], j] > 0.5).astype(float))
           for j in others]
    assert out["substrate/ap_macro_thresholded"] == pytest.approx(np.mean(thr))
    f1 = [f1_score(targets[known[:, j], j], probs[known[:, j], j] > 0.5) for j in others]
    assert out["substrate/f1_macro"] == pytest.approx(np.mean(f1))
    assert out["substrate/ap_macro_nodes"] == len(others)
