"""Rare-node integration: HMC benchmark variants, rare/all-node metrics, ensemble inference, and the
model's stored node weights.

References are independent: sklearn's recall/F1, numpy quantiles, the C-HMCNN paper's dense
probability-space MCLoss with a brute-force masked reduction, brute-force descendant maxima.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, recall_score

from benthicnet_hf import BenthicNetConfig, BenthicNetForHierarchicalClassification
from benthicnet_hf.hierarchy import Taxonomy, Hierarchy
from benthicnet_hf.experiments.hmc import HMCConfig, build_criterion, build_network, load_hmc
from benthicnet_hf.rare_nodes import rare_node_indices, recall_f1
from benthicnet_hf.experiments.hmc.train import predict, train_and_evaluate
from benthicnet_hf.rare_nodes import MCDropoutEnsemble, RareNodeLoss, imbalance_weights

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_hierarchy() -> Hierarchy:
    tree = Taxonomy.from_paths("zeta", ["A", "A > B", "A > B > C", "A > D", "E", "E > F"])
    dag = Taxonomy("beta", ("r", "x", "y", "z"), ((), (0,), (0,), (1, 2)), kind="dag", sep="")
    flat = Taxonomy.flat("alpha", ["red", "green", "blue"])
    return Hierarchy((tree, dag, flat))


def brute_descendants(h: Hierarchy) -> list[set[int]]:
    """Global descendant sets incl. self, by walking parent lists upwards from every node."""
    parents = [set() for _ in range(h.num_nodes)]
    for head, off in zip(h.heads, h.offsets):
        for j, ps in enumerate(head.parents):
            parents[off + j] = {off + p for p in ps}
    desc = [{j} for j in range(h.num_nodes)]
    for j in range(h.num_nodes):
        stack = list(parents[j])
        while stack:
            a = stack.pop()
            desc[a].add(j)
            stack.extend(parents[a])
    return desc


def reference_loss(h: Hierarchy, logits: np.ndarray, y: np.ndarray, m: np.ndarray, bit_w: np.ndarray) -> float:
    """C-HMCNN's MCLoss in probability space, weighted per bit, then per sample/head masked means."""
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    desc = brute_descendants(h)
    heads = h.head_of_node
    per_head = {k: [] for k in range(len(h.heads))}
    for b in range(len(p)):
        hv = np.empty(h.num_nodes)
        for j in range(h.num_nodes):
            d = sorted(desc[j])
            hv[j] = (p[b, d] * y[b, d]).max() if y[b, j] else p[b, d].max()
        bce = -(y[b] * np.log(hv) + (1 - y[b]) * np.log(1 - hv)) * bit_w[b]
        for k in range(len(h.heads)):
            sel = (heads == k) & (m[b] > 0)
            if sel.any():
                per_head[k].append(bce[sel].mean())
    return float(np.mean([np.mean(v) for v in per_head.values() if v]))


def coherent_labels(h: Hierarchy, rng: np.random.Generator, rows: int) -> np.ndarray:
    desc = brute_descendants(h)
    leaf = rng.random((rows, h.num_nodes)) < 0.3
    return np.array([[float(any(r[d] for d in desc[j])) for j in range(h.num_nodes)] for r in leaf])


# ------------------------------------------------------------------------------- model node weights
@pytest.mark.parametrize("apply_to", ["negative", "positive", "all"])
def test_model_loss_uses_config_node_weights_per_bit_and_survives_save(tmp_path, apply_to):
    h = small_hierarchy()
    rng = np.random.default_rng(0)
    y = coherent_labels(h, rng, 6)
    m = (rng.random(y.shape) > 0.2).astype(np.float64)
    w = imbalance_weights(h, y, m).numpy()
    torch.manual_seed(0)
    config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=h.to_list(), head_hidden_dim=8,
                              image_size=SIZE, node_weights=w.tolist(), node_weights_apply_to=apply_to)
    model = BenthicNetForHierarchicalClassification(config).eval()
    x = torch.randn(6, 3, SIZE, SIZE)
    yt, mt = torch.as_tensor(y, dtype=torch.float32), torch.as_tensor(m, dtype=torch.float32)
    with torch.no_grad():
        out = model(x, labels=yt, label_mask=mt)
    on = {"negative": y == 0, "positive": y == 1, "all": np.ones_like(y, dtype=bool)}[apply_to]
    bit_w = np.where(on, w[None, :], 1.0)
    expected = reference_loss(h, out.logits.numpy(), y, m, bit_w)
    assert out.loss.item() == pytest.approx(expected, rel=1e-4)
    model.save_pretrained(tmp_path)
    back = BenthicNetForHierarchicalClassification.from_pretrained(tmp_path).eval()
    assert back.config.node_weights_apply_to == apply_to and back.config.node_weights == pytest.approx(w.tolist())
    with torch.no_grad():
        assert back(x, labels=yt, label_mask=mt).loss.item() == pytest.approx(out.loss.item(), rel=1e-6)


def test_config_rejects_unknown_weight_bits():
    with pytest.raises(ValueError, match="node_weights_apply_to must be one of"):
        BenthicNetConfig(encoder_name="test_resnet", hierarchy=small_hierarchy().to_list(), node_weights_apply_to="neg")


# ----------------------------------------------------------------------------------------- metrics
def test_rare_nodes_are_the_bottom_frequency_quartile():
    rng = np.random.default_rng(1)
    y = (rng.random((50, 12)) < np.linspace(0.02, 0.9, 12)).astype(np.uint8)
    y[:, 3] = 0  # never seen in training: not a rare node, an absent one
    to_eval = np.ones(12, dtype=bool)
    to_eval[0] = False  # roots are not evaluated
    freq = y.sum(0)
    seen = [j for j in range(12) if to_eval[j] and freq[j] > 0]
    cut = np.percentile([freq[j] for j in seen], 25)
    assert rare_node_indices(y, to_eval).tolist() == [j for j in seen if freq[j] <= cut]


def test_recall_f1_match_sklearn():
    rng = np.random.default_rng(2)
    y = (rng.random((40, 9)) < 0.3).astype(int)
    y[:, 4] = 0  # no positive: excluded from the macro averages
    pred = (rng.random((40, 9)) < 0.4).astype(int)
    nodes = np.array([0, 2, 4, 5, 8])
    got = recall_f1(y, pred, nodes)
    pos = [0, 2, 5, 8]
    assert got["micro_recall"] == pytest.approx(recall_score(y[:, nodes], pred[:, nodes], average="micro"))
    assert got["micro_f1"] == pytest.approx(f1_score(y[:, nodes], pred[:, nodes], average="micro"))
    assert got["macro_recall"] == pytest.approx(recall_score(y[:, pos], pred[:, pos], average="macro"))
    assert got["macro_f1"] == pytest.approx(f1_score(y[:, pos], pred[:, pos], average="macro"))
    # the rare-node paper's node_f1: every node counts, one without positives as 0
    assert got["macro_recall_zero"] == pytest.approx(
        recall_score(y[:, nodes], pred[:, nodes], average="macro", zero_division=0))
    assert got["macro_f1_zero"] == pytest.approx(f1_score(y[:, nodes], pred[:, nodes], average="macro", zero_division=0))


# ----------------------------------------------------------------------------- HMC criteria and nets
def test_hmc_weighted_criterion_is_the_negative_bit_weighted_mcloss():
    h = small_hierarchy()
    rng = np.random.default_rng(3)
    y = coherent_labels(h, rng, 5)
    to_eval = ~h.is_root
    crit = build_criterion(h, to_eval, "weighted", fit_targets=torch.as_tensor(y, dtype=torch.float32))
    logits = torch.randn(5, h.num_nodes, dtype=torch.float64)
    got = crit(logits, torch.as_tensor(y)).item()
    m = np.broadcast_to(to_eval, y.shape).astype(float)
    w = imbalance_weights(h, y, m).numpy()
    assert got == pytest.approx(reference_loss(h, logits.numpy(), y, m, np.where(y == 0, w, 1.0)), rel=1e-6)
    with pytest.raises(ValueError, match="pass fit_targets"):
        build_criterion(h, to_eval, "weighted+focal-bma")
    with pytest.raises(ValueError, match="unknown loss"):
        build_criterion(h, to_eval, "focal")


def test_focal_criterion_sees_every_member_and_ensemble_prediction_is_coherent_mean():
    h = small_hierarchy()
    rng = np.random.default_rng(4)
    y = torch.as_tensor(coherent_labels(h, rng, 7), dtype=torch.float32)
    to_eval = ~h.is_root
    crit = build_criterion(h, to_eval, "weighted+focal-gmu", fit_targets=y)
    members = torch.randn(3, 7, h.num_nodes)
    mask = torch.as_tensor(np.tile(to_eval, (7, 1)), dtype=torch.float32)
    expected = RareNodeLoss(h, imbalance_weights(h, y, mask), focal_mode="gmu")(members, y, mask).loss
    assert crit(members, y).item() == pytest.approx(expected.item(), rel=1e-6)

    torch.manual_seed(0)
    full = build_network(5, 16, h, 3, 0.5, members=3, ensemble="full")
    mc = build_network(5, 16, h, 3, 0.5, members=3, ensemble="dropout")
    assert isinstance(mc, MCDropoutEnsemble)
    shared = build_network(5, 16, h, 3, 0.5, members=3, ensemble="heads").eval()
    with torch.no_grad():
        z = shared.encoder(torch.randn(4, 5))
        out = shared.heads(z)
    assert out.shape == (3, 4, h.num_nodes)
    for k in range(3):  # member k is the shared body followed by its own output layer
        ref = torch.nn.functional.linear(z, shared.heads.weight[k], shared.heads.bias[k])
        torch.testing.assert_close(out[k], ref)
    x = torch.randn(4, 5)
    pairs = torch.as_tensor(h.ancestor_pairs)
    p = predict(full, x, pairs)
    with torch.no_grad():
        member_p = full(x).sigmoid().numpy()  # (K, B, N)
    desc = brute_descendants(h)
    brute = np.stack([member_p[..., sorted(desc[j])].max(-1) for j in range(h.num_nodes)], -1).mean(0)
    np.testing.assert_allclose(p.numpy(), brute, atol=1e-6)


# --------------------------------------------------------------------------------- end to end, CLI
HEADER = "@RELATION t\n@ATTRIBUTE a numeric\n@ATTRIBUTE b {x,y}\n@ATTRIBUTE class hierarchical 01,01/01,01/02,02\n@DATA\n"


def _toy(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    labels = lambda a: "01/02" if a > 1.2 else ("01/01" if a > 0 else "02")  # noqa: E731
    rows = "".join(f"{a:.3f},{'x' if a > 0 else 'y'},{labels(a)}\n" for a in rng.normal(size=60))
    (tmp_path / "toy_train.arff").write_text(HEADER + rows)
    (tmp_path / "toy_test.arff.gz").write_bytes(gzip.compress((HEADER + rows).encode()))
    return tmp_path / "toy"


def test_lpros_training_runs_and_reports_rare_metrics(tmp_path):
    data = load_hmc(_toy(tmp_path))
    config = HMCConfig(hidden=8, lr=1e-2, epochs=2, loss="weighted", lpros=True, lpros_percentage=25)
    result = train_and_evaluate(data, config)
    assert 0 < result.auprc <= 1 and result.config["lpros"]
    m = result.metrics
    assert m["rare_nodes"] >= 1 and all(0 <= m[k] <= 1 for k in m if k.startswith(("rare_", "all_")))


def test_cli_runs_rare_variants_and_prints_ensemble_cost(tmp_path):
    prefix = _toy(tmp_path)
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "hmc.py"), str(prefix), "--hidden", "8", "--epochs", "1",
         "--lr", "1e-2", "--loss", "mcloss", "weighted+focal-bma", "--members", "3", "--lpros"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    rows = result["results"]
    assert [r["loss"] for r in rows] == ["mcloss+lpros", "weighted+focal-bma+lpros"]
    assert [r["members"] for r in rows] == [1, 3]
    for r in rows:
        assert {"rare_micro_recall", "rare_macro_f1", "all_micro_f1", "all_macro_recall"} <= set(r)
        # one network's parameters and activations against three networks'
        assert 0 < r["dropout_vs_full_memory_ratio"] < 1 and r["dropout_vs_full_time_ratio"] > 0
        assert 0 < r["heads_vs_full_memory_ratio"] < 1
