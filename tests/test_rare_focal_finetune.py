"""The rare-node weighted focal MCLoss in the image model (``config.loss="focal"``): its loss equals the
tabular reference :class:`benthicnet_hf.rare_nodes.RareNodeLoss` (``benchmarks/hmc.py``'s objective) on
the same member logits — ensembles of heads and MC dropout in training, node weights on each
``apply_to`` choice, focal alone —, the config round-trips through ``save_pretrained``, bad settings
are refused by name, and a tiny ``--demo`` fine-tune runs end to end with ``--loss focal``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState, GradientState

from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
from benthicnet_hf.hierarchy import Hierarchy, Taxonomy
from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification
from benthicnet_hf.rare_nodes import RareNodeLoss, imbalance_weights
from benthicnet_hf.training import parse_args, run_finetune

SIZE = 32


def small_hierarchy() -> Hierarchy:
    tree = Taxonomy.from_paths("zeta", ["A", "A > B", "A > B > C", "A > D", "E", "E > F"])
    dag = Taxonomy("beta", ("r", "x", "y", "z"), ((), (0,), (0,), (1, 2)), kind="dag", sep="")
    return Hierarchy((tree, dag, Taxonomy.flat("alpha", ["red", "green", "blue"])))


def batch(h: Hierarchy, rows: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images, ancestor-closed labels and a partial mask (a missing head, unknown bits)."""
    g = torch.Generator().manual_seed(seed)
    pairs = torch.as_tensor(h.ancestor_pairs)
    y = (torch.rand(rows, h.num_nodes, generator=g) < 0.4).float()
    # close upwards: a node is on when it or any descendant is (ancestor_pairs include self pairs)
    y = torch.zeros_like(y).scatter_reduce_(1, pairs[0].expand(rows, -1), y[:, pairs[1]], "amax")
    mask = (torch.rand(rows, h.num_nodes, generator=g) < 0.85).float()
    mask[0, h.head_slice(0)] = 0  # row 0 misses the tree head
    return torch.randn(rows, 3, SIZE, SIZE, generator=g), y, mask


def make_model(h: Hierarchy, **kw) -> BenthicNetForHierarchicalClassification:
    torch.manual_seed(0)
    kw.setdefault("head_hidden_dim", 8)
    config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=h.to_list(), image_size=SIZE, loss="focal", **kw)
    model = BenthicNetForHierarchicalClassification(config)
    with torch.no_grad():  # spread-out logits, so that uncertainties differ between bits
        for p in model.heads.parameters():
            p.mul_(3.0)
    return model


def loss_and_member_logits(model, x, y, mask) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's loss and the ``(M, B, N)`` member logits its heads produced in that same forward."""
    seen = []
    hook = model.heads.register_forward_hook(lambda mod, inp, out: seen.append(out.detach()))
    try:
        out = model(x, labels=y, label_mask=mask)
    finally:
        hook.remove()
    raw = seen[0] if seen[0].dim() == 3 else seen[0].unsqueeze(0)  # (K, S·B, N)
    return out.loss, raw.reshape(-1, x.shape[0], raw.shape[-1])


@pytest.mark.parametrize("apply_to, mode", [("negative", "bma"), ("positive", "gmu"), ("all", "epistemic")])
def test_heads_ensemble_focal_loss_equals_the_tabular_reference(apply_to: str, mode: str) -> None:
    h = small_hierarchy()
    x, y, mask = batch(h)
    w = imbalance_weights(h, y, mask)
    model = make_model(h, ensemble_size=3, focal_uncertainty=mode, node_weights=w.tolist(),
                       node_weights_apply_to=apply_to).train()
    loss, members = loss_and_member_logits(model, x, y, mask)
    assert members.shape == (3, 6, h.num_nodes)
    ref = RareNodeLoss(h, w, focal_mode=mode, apply_to=apply_to)(members, y, mask)
    torch.testing.assert_close(loss, ref.loss, rtol=1e-6, atol=1e-7)
    # the focal factor matters: the plain weighted MCLoss of the same members differs
    plain = RareNodeLoss(h, w, apply_to=apply_to)(members, y, mask).loss
    assert not torch.allclose(loss, plain, rtol=1e-3)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.heads.parameters())


def test_mc_dropout_members_train_with_focal_alone() -> None:
    """MC dropout passes are the members in training too (S = 4 here), and without node weights the
    loss is the focal factor alone."""
    h = small_hierarchy()
    x, y, mask = batch(h, seed=1)
    model = make_model(h, ensemble_dropout_samples=4, head_dropout=0.5, focal_uncertainty="predictive",
                       focal_k=1.5, focal_min=0.1).train()
    loss, members = loss_and_member_logits(model, x, y, mask)
    assert members.shape == (4, 6, h.num_nodes)
    assert not torch.equal(members[0], members[1])  # independent dropout masks
    ref = RareNodeLoss(h, None, focal_mode="predictive", focal_k=1.5, focal_min=0.1)(members, y, mask)
    torch.testing.assert_close(loss, ref.loss, rtol=1e-6, atol=1e-7)
    # an mcloss model with the same settings trains one pass (MC dropout is for evaluation there)
    mcloss = BenthicNetForHierarchicalClassification(BenthicNetConfig(
        encoder_name="test_resnet", hierarchy=h.to_list(), image_size=SIZE, head_hidden_dim=8,
        ensemble_dropout_samples=4, head_dropout=0.5)).train()
    assert mcloss(x, labels=y, label_mask=mask).member_probabilities is None


def test_focal_config_round_trips_and_reloads_the_same_loss(tmp_path: Path) -> None:
    h = small_hierarchy()
    x, y, mask = batch(h, seed=2)
    w = imbalance_weights(h, y, mask).tolist()
    model = make_model(h, ensemble_size=2, focal_uncertainty="gmu", focal_k=3.0, focal_min=0.5, node_weights=w,
                       node_weights_apply_to="positive").eval()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["loss"], saved["focal_uncertainty"], saved["focal_k"], saved["focal_min"],
            saved["node_weights_apply_to"]) == ("focal", "gmu", 3.0, 0.5, "positive")
    again = BenthicNetForHierarchicalClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(model(x, labels=y, label_mask=mask).loss, again(x, labels=y, label_mask=mask).loss)
    keys = ("loss", "focal_uncertainty", "focal_k", "focal_min", "node_weights_apply_to", "node_weights")
    reloaded = BenthicNetConfig.from_pretrained(tmp_path)
    assert [getattr(reloaded, k) for k in keys] == [getattr(model.config, k) for k in keys]


@pytest.mark.parametrize("kwargs, match", [
    ({"loss": "focal"}, "ensemble_size > 1 or ensemble_dropout_samples > 0"),
    ({"loss": "weighted"}, "loss must be one of"),
    ({"loss": "focal", "ensemble_size": 2, "focal_k": -1}, "focal_k must be a number >= 0"),
    ({"loss": "focal", "ensemble_size": 2, "focal_uncertainty": "variance"}, "uncertainty must be one of"),
    ({"loss": "focal", "output_type": "per_level"}, "output_type='mcm'"),
])
def test_config_refuses_focal_settings_it_cannot_train(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BenthicNetConfig(encoder_name="test_resnet", hierarchy=small_hierarchy().to_list(), **kwargs)


def test_cli_refuses_unknown_loss_and_weight_bits(tmp_path: Path) -> None:
    base = ["--output_dir", str(tmp_path), "--demo"]
    with pytest.raises(ValueError, match="--loss must be one of"):
        parse_args(base + ["--loss", "weighted"])
    with pytest.raises(ValueError, match="--node_weights_apply_to must be one of"):
        parse_args(base + ["--node_weights_apply_to", "rare"])


@pytest.mark.slow
def test_tiny_demo_finetune_with_the_focal_loss(tmp_path: Path) -> None:
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    args = parse_args([
        "--demo", "--data_dir", str(tmp_path / "data"), "--demo_num_images", "160", "--demo_image_size", "32",
        "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "run"),
        "--encoder", "test_resnet", "--image_size", "32", "--head_hidden_dim", "0", "--head_dropout", "0.3",
        "--learning_rate", "1e-3", "--warmup_epochs", "0", "--report_to", "none", "--checkpointing_steps", "0",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--dataloader_num_workers", "0",
        "--node_weights", "imbalance", "--node_weights_apply_to", "positive",
        "--loss", "focal", "--ensemble_size", "2", "--mc_dropout_samples", "2", "--focal_uncertainty", "gmu",
    ])
    result = run_finetune(args)
    assert result["completed_steps"] >= 1
    assert all(np.isfinite(e["train_loss"]) for e in result["history"] if "train_loss" in e)
    config = json.loads((tmp_path / "run" / "final" / "config.json").read_text())
    assert (config["loss"], config["focal_uncertainty"], config["node_weights_apply_to"]) == ("focal", "gmu", "positive")
    assert config["node_weights"] is not None and (config["ensemble_size"], config["ensemble_dropout_samples"]) == (2, 2)
    model = BenthicNetForHierarchicalClassification.from_pretrained(tmp_path / "run" / "final").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.member_probabilities.shape[1] == 4 and out.uncertainty.shape == out.probabilities.shape
