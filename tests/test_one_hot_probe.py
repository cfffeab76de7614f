"""One-hot probes (``--one_hot_task``): the task's rows against a loop over rows, the softmax
cross-entropy against torch's, accuracy / macro F1 against sklearn, and a run on the demo data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from accelerate.state import AcceleratorState, GradientState
from sklearn.metrics import accuracy_score, f1_score

from benthicnet_hf import Hierarchy
from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
from benthicnet_hf.data import build_dataset
from benthicnet_hf.data.demo import DEMO_SOURCE_EXHAUSTIVE, make_demo_dataset
from benthicnet_hf.metrics import compute_metrics
from benthicnet_hf.metrics.single_label import accuracy, top1_macro_f1
from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification
from benthicnet_hf.training import parse_args, run_finetune
from benthicnet_hf.data.label_matrices import label_matrices
from benthicnet_hf.training.one_hot import (
    OneHotTask, one_hot_hierarchy, one_hot_labels, one_hot_splits, parse_one_hot_task, task_classes,
)

CATAMI = Hierarchy.catami()
# The paper's substrate_depth_2 classes (Xu et al. 2024), by their last path component
PAPER_CLASSES = ["Boulders", "Cobbles", "Rock", "Pebble / gravel", "Sand / mud (<2mm)"]


def brute_force_task(targets: np.ndarray, mask: np.ndarray, hierarchy: Hierarchy, head: str, depth: int) -> list[int]:
    """Per row, by loops: the class (position among the head's depth-``depth`` nodes) of its one
    known positive there, -1 for none, -2 for several."""
    taxonomy = hierarchy.head(head)
    start = hierarchy.head_slice(head).start
    nodes = [start + i for i in range(len(taxonomy.nodes)) if taxonomy.depth[i] == depth]
    out = []
    for r in range(targets.shape[0]):
        found = [k for k, j in enumerate(nodes) if targets[r, j] == 1 and mask[r, j] == 1]
        out.append(found[0] if len(found) == 1 else (-1 if not found else -2))
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("one_hot_demo") / "data"
    make_demo_dataset(root, num_images=120, image_size=32, seed=0)
    return root


# ------------------------------------------------------------------------------- the task
def test_named_and_spelled_tasks() -> None:
    assert parse_one_hot_task("substrate_depth_2") == OneHotTask("substrate", 3, "substrate_depth_2")
    assert parse_one_hot_task("relief:1") == OneHotTask("relief", 1, "relief_d1")
    for bad in ("substrate", "substrate:0", "substrate:two", ":2"):
        with pytest.raises(ValueError, match="HEAD:DEPTH"):
            parse_one_hot_task(bad)
    with pytest.raises(ValueError, match="no head 'sponges'"):
        task_classes(CATAMI, parse_one_hot_task("sponges:2"))
    with pytest.raises(ValueError, match="0 node"):
        task_classes(CATAMI, parse_one_hot_task("substrate:9"))
    with pytest.raises(ValueError, match="--encoder_checkpoint instead"):
        parse_args(["--demo", "--output_dir", "/tmp/unused", "--one_hot_task", "substrate:3", "--init_from", "m"])
    with pytest.raises(ValueError, match="output_type hsoftmax"):
        parse_args(["--demo", "--output_dir", "/tmp/unused", "--one_hot_task", "substrate:3", "--output_type", "mcm"])


def test_substrate_depth_2_is_the_papers_five_classes() -> None:
    task = parse_one_hot_task("substrate_depth_2")
    names = [CATAMI.labels[i].split(" > ")[-1] for i in task_classes(CATAMI, task)]
    assert sorted(names) == sorted(PAPER_CLASSES)
    flat = one_hot_hierarchy(CATAMI, task)
    assert flat.head_names == ["substrate_depth_2"] and flat.num_nodes == 5
    assert (np.asarray(flat.heads[0].depth) == 1).all()  # K roots: one softmax under hsoftmax


def test_task_rows_match_a_loop_over_rows() -> None:
    rng = np.random.default_rng(0)
    n = CATAMI.num_nodes
    for spec in ("substrate_depth_2", "substrate:2", "relief:1", "biota:3"):
        task = parse_one_hot_task(spec)
        classes = task_classes(CATAMI, task)
        # about one positive per row among the task's nodes: rows with none, one and several
        targets = (rng.random((300, n)) < 1.2 / len(classes)).astype(np.uint8)
        mask = (rng.random((300, n)) < 0.8).astype(np.uint8)
        got = one_hot_labels(targets, mask, classes)
        expected = brute_force_task(targets, mask, CATAMI, task.head, task.depth)
        assert got.tolist() == expected
        assert {-2, -1} <= set(expected) and max(expected) >= 1  # all three cases occur


def test_splits_keep_exactly_the_task_rows(demo: Path) -> None:
    data = build_dataset(demo / "labels.csv", demo, hierarchy=CATAMI, source_exhaustive=DEMO_SOURCE_EXHAUSTIVE)
    lines: list[str] = []
    labels = {split: label_matrices(ds, CATAMI) for split, ds in data.items()}
    cut, flat = one_hot_splits(data, labels, CATAMI, "substrate_depth_2", log=lines.append)
    assert len(lines) == 3 and all("rows kept" in line for line in lines)
    for split in ("train", "validation", "test"):
        y, m = label_matrices(data[split], CATAMI)
        expected = brute_force_task(y, m, CATAMI, "substrate", 3)
        kept = [c for c in expected if c >= 0]
        ty, tm = label_matrices(cut[split], flat)
        assert ty.argmax(1).tolist() == kept and (ty.sum(1) == 1).all() and (tm == 1).all()
        assert cut[split]["image_path"] == [p for p, c in zip(data[split]["image_path"], expected) if c >= 0]


# ------------------------------------------------------------------------------- loss and metrics
def test_hsoftmax_on_the_flat_task_is_softmax_cross_entropy() -> None:
    flat = one_hot_hierarchy(CATAMI, parse_one_hot_task("substrate_depth_2"))
    torch.manual_seed(0)
    model = BenthicNetForHierarchicalClassification(BenthicNetConfig(
        encoder_name="test_resnet", hierarchy=flat.to_list(), output_type="hsoftmax", head_hidden_dim=0,
        image_size=32)).eval()
    classes = torch.tensor([0, 4, 2, 2, 1, 3])
    labels = F.one_hot(classes, 5).float()
    with torch.no_grad():
        out = model(pixel_values=torch.randn(6, 3, 32, 32), labels=labels, label_mask=torch.ones_like(labels))
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, classes), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.probabilities, out.logits.softmax(-1), rtol=1e-5, atol=1e-6)


def test_accuracy_and_macro_f1_match_sklearn() -> None:
    rng = np.random.default_rng(1)
    k, rows = 5, 400
    true = rng.choice(k, rows, p=[0.4, 0.3, 0.2, 0.1, 0.0])  # class 4 never true
    probs = rng.random((rows, k)) + 0.8 * np.eye(k)[true]
    targets = np.eye(k, dtype=np.uint8)[true]
    pred = probs.argmax(1)
    assert accuracy(probs, targets) == pytest.approx(accuracy_score(true, pred))
    assert top1_macro_f1(probs, targets) == pytest.approx(f1_score(true, pred, average="macro"))
    # rows without exactly one known positive are left out, as sklearn on the kept rows
    targets2 = targets.copy()
    targets2[:50] = 0
    targets2[50:60, :2] = 1
    keep = np.arange(60, rows)
    assert top1_macro_f1(probs, targets2) == pytest.approx(f1_score(true[keep], pred[keep], average="macro"))


def test_random_scores_land_at_the_uniform_prior() -> None:
    rng = np.random.default_rng(2)
    k, rows = 5, 20000
    true = rng.choice(k, rows, p=[0.5, 0.2, 0.1, 0.1, 0.1])
    targets = np.eye(k, dtype=np.uint8)[true]
    probs = rng.random((rows, k))
    assert accuracy(probs, targets) == pytest.approx(1 / k, abs=0.015)
    # a constant score (the prior) predicts the majority class: accuracy = its share, macro F1 = one class's
    prior = np.broadcast_to(targets.mean(0), targets.shape)
    share = (true == 0).mean()
    assert accuracy(prior, targets) == pytest.approx(share)
    assert top1_macro_f1(prior, targets) == pytest.approx(f1_score(true, np.zeros(rows, int), average="macro"))
    flat = one_hot_hierarchy(CATAMI, parse_one_hot_task("substrate_depth_2"))
    metrics = compute_metrics(probs.astype(np.float32), targets, np.ones_like(targets), flat)
    assert metrics["substrate_depth_2/accuracy"] == pytest.approx(accuracy(probs, targets))
    assert metrics["substrate_depth_2/top1_macro_f1"] == pytest.approx(top1_macro_f1(probs, targets))


# ------------------------------------------------------------------------------- end to end
def test_one_hot_probe_trains_and_reports_on_the_demo_data(demo: Path, tmp_path: Path) -> None:
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    out = tmp_path / "run"
    result = run_finetune(parse_args([
        "--demo", "--data_dir", str(demo), "--output_dir", str(out), "--one_hot_task", "substrate_depth_2",
        "--recipe", "one_hot_hft", "--encoder", "test_resnet", "--image_size", "32", "--learning_rate", "1e-3",
        "--warmup_epochs", "0", "--num_train_epochs", "2", "--per_device_train_batch_size", "16",
        "--report_to", "none", "--checkpointing_steps", "0", "--dataloader_num_workers", "0"]))
    test, baseline = result["test"], result["baseline"]
    assert 0 <= test["substrate_depth_2/accuracy"] <= 1 and 0 <= test["substrate_depth_2/top1_macro_f1"] <= 1
    # the label-prior baseline predicts the training majority class for every test row
    data = build_dataset(demo / "labels.csv", demo, hierarchy=CATAMI, source_exhaustive=DEMO_SOURCE_EXHAUSTIVE)
    train = [c for c in brute_force_task(*label_matrices(data["train"], CATAMI), CATAMI, "substrate", 3) if c >= 0]
    test_rows = [c for c in brute_force_task(*label_matrices(data["test"], CATAMI), CATAMI, "substrate", 3) if c >= 0]
    majority = np.bincount(train).argmax()
    assert baseline["substrate_depth_2/accuracy"] == pytest.approx(np.mean(np.array(test_rows) == majority))
    assert result["eval_count"]["test"] == len(test_rows)
    report = json.loads((out / "test_metrics.json").read_text())
    assert "substrate_depth_2/top1_macro_f1" in report["test"]
    config = json.loads((out / "final" / "config.json").read_text())
    assert config["output_type"] == "hsoftmax"
    assert [len(h["nodes"]) for h in config["hierarchy"]] == [5]  # the saved model is the 5-class task
    card = (out / "final" / "README.md").read_text()
    assert "one_hot_hft" in card and "substrate_depth_2" in card
