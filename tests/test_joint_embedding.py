"""The ``joint_embedding`` output type: images and labels as order embeddings in one space.

References: the order-embedding energy written out in numpy, a Python loop over samples and known
bits for the loss, brute-force descendant sets for coherence, sklearn for AP / F1, and a label prior
computed from the demo table's strings (not from the library's encoders) for the fine-tune.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import average_precision_score, f1_score

from benthicnet_hf.cli import main
from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
from benthicnet_hf.data.demo import make_demo_dataset
from benthicnet_hf.hierarchy import Hierarchy
from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification
from benthicnet_hf.output_types import build_output_type
from benthicnet_hf.output_types.joint_embedding import MARGIN, TEMPERATURE, JointEmbeddingOutputType, LabelEnergy
from benthicnet_hf.taxonomy import Taxonomy
from benthicnet_hf.training import parse_args, run_finetune

PATHS = ["a > b > c", "a > b > d", "a > e", "f > g", "f > h > i"]
TREE = Taxonomy.from_paths("toy", PATHS)


def descendants_of(node: str) -> list[int]:
    """Brute force: the node itself and every node whose path starts with it."""
    return [j for j, other in enumerate(TREE.nodes) if other == node or other.startswith(node + " > ")]


def test_energy_is_the_order_energy_with_the_image_below_its_labels() -> None:
    torch.manual_seed(0)
    layer = LabelEnergy(num_nodes=6, dim=4)
    images = torch.randn(5, 4)
    labels = layer.label_embeddings.detach().numpy()
    x = images.numpy()
    expected = np.zeros((5, 6))
    for b in range(5):
        for n in range(6):
            expected[b, n] = sum(max(0.0, labels[n, i] - x[b, i]) ** 2 for i in range(4))
    np.testing.assert_allclose(layer.energies(images).detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer(images).detach().numpy(), -expected, rtol=1e-5, atol=1e-6)
    # an image that dominates a label coordinatewise has energy 0 against it; leading dims broadcast
    above = layer.label_embeddings.detach()[2] + torch.tensor([0.0, 0.1, 2.0, 0.5])
    assert layer.energies(above[None])[0, 2].item() == 0.0
    assert layer.energies(torch.randn(3, 5, 4)).shape == (3, 5, 6)
    with pytest.raises(ValueError, match="dimension 4"):
        layer.energies(torch.randn(2, 3))


def test_masked_loss_equals_a_loop_over_samples_and_known_bits() -> None:
    rng = np.random.default_rng(0)
    n = len(TREE.nodes)
    energy = rng.exponential(0.8, size=(7, n))
    targets = (rng.random((7, n)) < 0.4).astype(np.float32)
    mask = (rng.random((7, n)) < 0.7).astype(np.float32)
    mask[3] = 0  # a sample with nothing known
    mask[4] = targets[4]  # a sample with only known positives
    mask[5] = 1 - targets[5]  # and one with only known negatives
    weights = rng.uniform(0.5, 2.0, n)
    handler = build_output_type("joint_embedding", TREE)
    assert isinstance(handler, JointEmbeddingOutputType)
    for w in (None, weights):
        got = handler.loss(torch.tensor(-energy), torch.tensor(targets), torch.tensor(mask),
                           None if w is None else torch.tensor(w)).numpy()
        for b in range(7):
            pos, neg = [], []
            for j in range(n):
                if mask[b, j] == 0:
                    continue  # unknown bits count nowhere
                scale = 1.0 if w is None else w[j]
                if targets[b, j] == 1:
                    pos.append(scale * energy[b, j])
                else:
                    neg.append(scale * max(0.0, MARGIN - energy[b, j]))
            expected = (sum(pos) + sum(neg)) / max(1, len(pos))
            assert got[b] == pytest.approx(expected, rel=1e-6, abs=1e-9), b
    labelled = handler.labelled(torch.tensor(targets), torch.tensor(mask)).numpy()
    np.testing.assert_array_equal(labelled, mask.sum(1) > 0)


def test_probabilities_are_coherent_exp_of_the_least_descendant_energy() -> None:
    rng = np.random.default_rng(1)
    energy = rng.exponential(1.0, size=(20, len(TREE.nodes)))
    p = build_output_type("joint_embedding", TREE).probabilities(torch.tensor(-energy)).numpy()
    for j, node in enumerate(TREE.nodes):
        least = energy[:, descendants_of(node)].min(1)
        np.testing.assert_allclose(p[:, j], np.exp(-least / TEMPERATURE), rtol=1e-6)
        for d in descendants_of(node):
            assert (p[:, j] >= p[:, d]).all()
    assert TEMPERATURE == pytest.approx(MARGIN / (2 * math.log(2)))  # p = 0.5 halfway to the margin


def test_random_scores_give_ap_near_the_label_prior() -> None:
    rng = np.random.default_rng(2)
    rows, n = 4000, len(TREE.nodes)
    prior = rng.uniform(0.1, 0.6, n)
    targets = rng.random((rows, n)) < prior  # independent of the scores
    torch.manual_seed(2)
    images = LabelEnergy(n, 8)(torch.randn(rows, 8)).detach()
    p = build_output_type("joint_embedding", TREE).probabilities(images).numpy()
    for j in range(n):
        assert average_precision_score(targets[:, j], p[:, j]) == pytest.approx(targets[:, j].mean(), abs=0.04)


def tiny_config(**kw: object) -> BenthicNetConfig:
    kw = {"embedding_dim": 6, **kw}
    return BenthicNetConfig(encoder_name="test_resnet", hierarchy=Hierarchy.catami().subset(["substrate", "colour"]),
                            output_type="joint_embedding", head_hidden_dim=8, image_size=32, **kw)


def test_model_heads_hold_label_points_and_reload_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = BenthicNetForHierarchicalClassification(tiny_config()).eval()
    hier = model.config.get_hierarchy()
    params = dict(model.named_parameters())
    # the tree head ends in 6 values and its (n_nodes, 6) label points; the flat colour head keeps logits
    assert params["heads.heads.0.energy.label_embeddings"].shape == (len(hier.heads[0].nodes), 6)
    assert params["heads.heads.0.fc2.weight"].shape == (6, 8)
    assert not any(k.startswith("heads.heads.1.energy") for k in params)
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        before = model(pixels)
    sub = hier.head_slice("substrate")
    assert (before.logits[:, sub] <= 0).all()
    model.save_pretrained(tmp_path)
    loaded = BenthicNetForHierarchicalClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.output_type == "joint_embedding" and loaded.config.embedding_dim == 6
    assert torch.equal(loaded.heads.heads[0].energy.label_embeddings, model.heads.heads[0].energy.label_embeddings)
    with torch.no_grad():
        # the same features through both: energies bit-identical (the encoder's conv kernels may round
        # differently on freshly loaded weights, so whole-model outputs are compared to 1e-5)
        assert torch.equal(loaded.heads(before.features), model.heads(before.features))
        after = loaded(pixels)
    torch.testing.assert_close(after.probabilities, before.probabilities, rtol=1e-5, atol=1e-6)


def test_bad_embedding_dim_is_refused() -> None:
    with pytest.raises(ValueError, match="embedding_dim"):
        BenthicNetConfig(output_type="joint_embedding", embedding_dim=0)


def _prefix(path: str, level: int) -> str | None:
    parts = path.split(" > ")
    return " > ".join(parts[:level]) if len(parts) >= level else None


def test_finetune_on_demo_data_beats_the_label_prior(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["--demo", "--data_dir", str(tmp_path / "data"), "--demo_num_images", "160", "--demo_image_size", "40",
            "--cache_dir", str(tmp_path / "cache"), "--encoder", "test_resnet", "--image_size", "32",
            "--head_hidden_dim", "64", "--head_dropout", "0.1", "--learning_rate", "3e-3", "--warmup_epochs", "1",
            "--num_train_epochs", "10", "--per_device_train_batch_size", "16", "--report_to", "none",
            "--checkpointing_steps", "0", "--calibrate", "False", "--output_type", "joint_embedding",
            "--seed", "0", "--output_dir", str(out)]
    run_finetune(parse_args(argv))
    # held out: a demo set drawn with another seed (new sites and images)
    held = tmp_path / "held"
    make_demo_dataset(held, num_images=96, image_size=40, seed=1)
    test = pd.read_csv(held / "labels.csv")
    train = pd.read_csv(tmp_path / "data" / "labels.csv")
    model = BenthicNetForHierarchicalClassification.from_pretrained(out / "final").eval()
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(out / "final")
    images = [Image.open(held / p).convert("RGB") for p in test["image"]]
    with torch.no_grad():
        probs = model(processor(images, return_tensors="pt")["pixel_values"]).probabilities.numpy()
    labels = model.config.get_hierarchy().labels
    report = {}
    for level in (2, 3, 4):  # level 1 ("Substrate") is every row's
        nodes = [name.split(": ", 1)[1] for name in labels
                 if name.startswith("substrate: ") and name.count(" > ") == level - 1]
        cols = [labels.index("substrate: " + n) for n in nodes]
        truth = [(i, _prefix(p, level)) for i, p in enumerate(test["catami_substrate"])
                 if isinstance(p, str) and _prefix(p, level) is not None]
        rows, true_node = [i for i, _ in truth], np.array([nodes.index(n) for _, n in truth])
        scores = probs[rows][:, cols]
        y = np.zeros_like(scores, dtype=bool)
        y[np.arange(len(rows)), true_node] = True
        # the label prior from the training table's strings: its most frequent node, and its nodes
        # known positive in more than half of the training rows
        train_nodes = pd.Series([_prefix(p, level) for p in train["catami_substrate"] if isinstance(p, str)]).dropna()
        freq = train_nodes.value_counts() / len(train_nodes)
        prior_hit1 = float(np.mean([n == freq.index[0] for _, n in truth]))
        prior_pred = np.tile([freq.get(n, 0.0) > 0.5 for n in nodes], (len(rows), 1))
        hit1 = float((scores.argmax(1) == true_node).mean())
        hit3 = float((np.argsort(-scores, 1)[:, :3] == true_node[:, None]).any(1).mean())
        f1 = f1_score(y.ravel(), (scores >= 0.5).ravel())
        prior_f1 = f1_score(y.ravel(), prior_pred.ravel(), zero_division=0)
        report[level] = dict(rows=len(rows), hit1=hit1, hit3=hit3, prior_hit1=prior_hit1, f1_micro=f1,
                             prior_f1_micro=prior_f1)
    print(report)
    # the library's hit@k on the encoded held-out labels reads the same figures
    from benthicnet_hf.labels import LabelEncoder
    from benthicnet_hf.metrics import level_hit_at_k

    hier = model.config.get_hierarchy()
    enc = LabelEncoder(hier).encode({"substrate": [p if isinstance(p, str) else None for p in test["catami_substrate"]]})
    library = {e["depth"]: e for e in level_hit_at_k(probs, enc.targets, enc.mask, hier) if e["head"] == "substrate"}
    for level, r in report.items():
        assert library[level]["rows"] == r["rows"]
        assert library[level]["hit@1"] == pytest.approx(r["hit1"]) and library[level]["hit@3"] == pytest.approx(r["hit3"])
    for level, r in report.items():
        assert r["hit1"] > r["prior_hit1"] + 0.05, (level, r)
        assert r["f1_micro"] > r["prior_f1_micro"], (level, r)

    # predict on the saved model: one CSV row per image, substrate paths from the hierarchy
    csv_out = tmp_path / "pred.csv"
    files = [str(held / p) for p in test["image"][:12]]
    assert main(["predict", "--model", str(out / "final"), *files, "--output", str(csv_out), "--no_progress"]) == 0
    with csv_out.open(newline="") as f:
        predicted = list(csv.DictReader(f))
    assert len(predicted) == 12
    known = {name.split(": ", 1)[1] for name in labels if name.startswith("substrate: ")}
    paths = [p for row in predicted for p in row["substrate_paths"].split("; ") if p]
    assert paths and set(paths) <= known


def test_a_mismatched_checkpoint_is_refused_naming_the_joint_embedding_shapes(tmp_path: Path) -> None:
    """Head shapes of a joint model are read from its label points: (nodes, embedding_dim)."""
    torch.manual_seed(0)
    BenthicNetForHierarchicalClassification(tiny_config()).save_pretrained(tmp_path / "joint")
    BenthicNetForHierarchicalClassification(BenthicNetConfig(
        encoder_name="test_resnet", hierarchy=Hierarchy.catami().subset(["substrate", "colour"]), head_hidden_dim=8,
        image_size=32)).save_pretrained(tmp_path / "mcm")
    substrate_nodes = len(Hierarchy.catami().subset(["substrate"]).heads[0].nodes)
    # the same hierarchy and embedding width: no complaint (the node count is the label points' rows, not 6)
    loaded = BenthicNetForHierarchicalClassification.from_pretrained(tmp_path / "joint")
    assert loaded.heads.heads[0].energy.label_embeddings.shape == (substrate_nodes, 6)
    with pytest.raises(ValueError, match=r"head 0 'substrate': config has embedding_dim=4, checkpoint has 6"):
        BenthicNetForHierarchicalClassification.from_pretrained(tmp_path / "joint", config=tiny_config(embedding_dim=4))
    with pytest.raises(ValueError, match=r"holds label embeddings \(output_type='joint_embedding'\), the config "
                                         r"has output_type='mcm'"):
        BenthicNetForHierarchicalClassification.from_pretrained(tmp_path / "joint", config=BenthicNetConfig.from_pretrained(tmp_path / "mcm"))
    with pytest.raises(ValueError, match="holds no label embeddings for this head"):
        BenthicNetForHierarchicalClassification.from_pretrained(tmp_path / "mcm", config=tiny_config())
