"""Ensembles of heads and MC dropout in the transformers model: outputs against a numpy oracle
(member by member), bBMA uncertainty, coherence, loss = mean of the members' losses, save/load,
ensemble-size mismatch errors, the pipeline, ``benthicnet-hf predict --uncertainty``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from benthicnet_hf.cli import main
from benthicnet_hf.configuration_benthicnet import UNCERTAINTY_ALIASES, UNCERTAINTY_MODES, BenthicNetConfig
from benthicnet_hf.hierarchy import Taxonomy, Hierarchy
from benthicnet_hf.image_processing import make_image_processor
from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification
from benthicnet_hf.rare_nodes import MODES, bit_weights, gated_margin_uncertainty, uncertainty

SIZE = 32
K = 3


def small_hierarchy() -> Hierarchy:
    tree = Taxonomy.from_paths("zeta", ["A", "A > B", "A > B > C", "A > D", "E", "E > F"])
    dag = Taxonomy("beta", ("r", "x", "y", "z"), ((), (0,), (0,), (1, 2)), kind="dag", sep="")
    flat = Taxonomy.flat("alpha", ["red", "green", "blue"])
    return Hierarchy((tree, dag, flat))


def make_model(hidden: int = 8, members: int = K, **kw) -> BenthicNetForHierarchicalClassification:
    torch.manual_seed(0)
    config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=small_hierarchy().to_list(),
                              head_hidden_dim=hidden, image_size=SIZE, ensemble_size=members, **kw)
    model = BenthicNetForHierarchicalClassification(config)
    with torch.no_grad():  # non-trivial BatchNorm statistics and spread-out logits
        for head in model.heads.heads:
            head.norm.running_mean.normal_()
            head.norm.running_var.uniform_(0.5, 2.0)
        for p in model.heads.parameters():
            p.mul_(3.0)
    return model.eval()


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def numpy_member_logits(model, features: np.ndarray) -> np.ndarray:
    """``(K, B, N)``: BN(affine=False) → Linear → ReLU → Linear per head and member (eval mode)."""
    members = []
    for k in range(model.config.ensemble_size):
        outs = []
        for head in model.heads.heads:
            bn = head.norm
            z = (features - bn.running_mean.numpy()) / np.sqrt(bn.running_var.numpy() + bn.eps)
            layers = [head.fc1, head.fc2] if hasattr(head, "fc1") else [head.fc]
            for i, fc in enumerate(layers):
                z = z @ fc.weight[k].detach().double().numpy().T + fc.bias[k].detach().double().numpy()
                if i < len(layers) - 1:
                    z = np.maximum(z, 0)
            outs.append(z)
        members.append(np.concatenate(outs, axis=1))
    return np.stack(members)


def dense_mcm_probs(hierarchy: Hierarchy, logits: np.ndarray) -> np.ndarray:
    """The C-HMCNN formula in probability space, ``max_j R[i, j] * p[b, j]``, for ``(B, N)`` logits."""
    r = hierarchy.dense_ancestor_matrix().astype(np.float64)
    return (r[None] * sigmoid(logits)[:, None, :]).max(-1)


def numpy_mcloss(hier: Hierarchy, logits: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
    """Paper MCLoss in probability space + three-level masking, per head with loops (one member)."""
    r = hier.dense_ancestor_matrix().astype(np.float64)
    p = sigmoid(logits)
    y = y * mask  # only known bits are targets: an unknown y = 1 must not feed MCM(y·p)
    per_head = []
    for h in range(len(hier.heads)):
        s = hier.head_slice(h)
        sample_losses = []
        for b in range(p.shape[0]):
            known = mask[b, s] > 0
            if not known.any():
                continue
            hh = ((1 - y[b]) * (r * p[b]).max(1) + y[b] * (r * (y[b] * p[b])).max(1))[s]
            hh = np.clip(hh, 1e-12, 1 - 1e-12)
            bce = -(y[b, s] * np.log(hh) + (1 - y[b, s]) * np.log(1 - hh))
            sample_losses.append(bce[known].mean())
        if sample_losses:
            per_head.append(np.mean(sample_losses))
    return float(np.mean(per_head))


def parent_child(hier: Hierarchy) -> tuple[np.ndarray, np.ndarray]:
    child = np.repeat(np.arange(hier.num_nodes), hier.parents_padded.shape[1])
    parent = hier.parents_padded.reshape(-1)
    keep = parent >= 0
    return parent[keep], child[keep]


# ------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(ensemble_size=0), "ensemble_size must be an integer >= 1"),
        (dict(ensemble_size=2.5), "ensemble_size must be an integer"),
        (dict(ensemble_dropout_samples=-1), "ensemble_dropout_samples must be an integer >= 0"),
        (dict(ensemble_size=2, output_type="per_level"), "need output_type='mcm'"),
        (dict(ensemble_dropout_samples=4, head_dropout=0.0), "needs head_dropout > 0"),
        (dict(uncertainty="variance"), "uncertainty must be one of"),
    ],
)
def test_config_rejects_bad_ensemble_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BenthicNetConfig(encoder_name="test_resnet", hierarchy=small_hierarchy().to_list(), **kwargs)


def test_config_uncertainty_modes_follow_rare_nodes_and_aliases():
    assert UNCERTAINTY_MODES == MODES
    assert UNCERTAINTY_ALIASES == uncertainty.ALIASES
    config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=small_hierarchy().to_list(), uncertainty="PCS")
    assert config.uncertainty == "gmu" and config.ensemble_size == 1 and config.ensemble_dropout_samples == 0


# ----------------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("hidden", [8, 0])
def test_ensemble_forward_matches_numpy_members(hidden):
    model = make_model(hidden)
    hier = model.config.get_hierarchy()
    b, n = 4, hier.num_nodes
    with torch.no_grad():
        out = model(torch.randn(b, 3, SIZE, SIZE))
    assert out.probabilities.shape == out.logits.shape == out.uncertainty.shape == (b, n)
    assert out.member_probabilities.shape == (b, K, n)

    logits = numpy_member_logits(model, out.features.double().numpy())  # (K, B, N)
    members = np.stack([dense_mcm_probs(hier, lg) for lg in logits])  # (K, B, N)
    assert np.abs(members[0] - members[1]).max() > 1e-2  # the members are independent draws
    np.testing.assert_allclose(out.member_probabilities.numpy().transpose(1, 0, 2), members, atol=1e-5)
    mean = members.mean(0)
    np.testing.assert_allclose(out.probabilities.numpy(), mean, atol=1e-5)
    np.testing.assert_allclose(out.uncertainty.numpy(), 1 - np.abs(2 * mean - 1), atol=1e-5)  # bBMA
    np.testing.assert_allclose(out.logits.numpy(), logits.mean(0), atol=1e-4)

    model.config.uncertainty = "gmu"
    with torch.no_grad():
        gmu = model(torch.randn(b, 3, SIZE, SIZE))
    expected = gated_margin_uncertainty(gmu.member_probabilities.transpose(0, 1))
    torch.testing.assert_close(gmu.uncertainty, expected)


def test_ensemble_probabilities_are_coherent():
    model = make_model(8)
    hier = model.config.get_hierarchy()
    with torch.no_grad():  # push leaf logits up so that raw scores are incoherent
        for i, head in enumerate(model.heads.heads):
            head.fc2.bias.add_(torch.as_tensor(hier.is_leaf[hier.head_slice(i)] * 6.0 - 3.0, dtype=torch.float32))
        out = model(torch.randn(6, 3, SIZE, SIZE))
    parent, child = parent_child(hier)
    raw = out.logits.numpy()
    assert (raw[:, child] > raw[:, parent]).any(), "test set-up: raw logits should be incoherent"
    probs, members = out.probabilities.numpy(), out.member_probabilities.numpy()
    assert (probs[:, child] <= probs[:, parent]).all()
    assert (members[:, :, child] <= members[:, :, parent]).all()


def test_ensemble_loss_is_the_mean_of_member_losses():
    model = make_model(8)
    hier = model.config.get_hierarchy()
    rng = np.random.default_rng(0)
    b, n = 5, hier.num_nodes
    y = (rng.random((b, n)) < 0.4).astype(np.float32)
    mask = (rng.random((b, n)) < 0.8).astype(np.float32)
    mask[0, hier.head_slice("beta")] = 0  # a sample without label for one head
    mask[:, hier.head_slice("alpha")] = 0  # a head without any labelled sample in the batch
    x = torch.randn(b, 3, SIZE, SIZE)
    with torch.no_grad():
        out = model(x, labels=torch.as_tensor(y), label_mask=torch.as_tensor(mask))
    logits = numpy_member_logits(model, out.features.double().numpy())
    expected = np.mean([numpy_mcloss(hier, lg, y, mask) for lg in logits])
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)

    # training mode: every member gets a gradient from the same batch
    model.train()
    model(x, labels=torch.as_tensor(y), label_mask=torch.as_tensor(mask)).loss.backward()
    grad = model.heads.heads[0].fc2.weight.grad  # (K, nodes, hidden)
    assert all(grad[k].abs().sum() > 0 for k in range(K))


def test_weighted_ensemble_loss_is_the_mean_of_weighted_member_losses():
    weights = [float(i % 3 + 1) for i in range(13)]
    model = make_model(8, node_weights=weights, node_weights_apply_to="all")
    hier = model.config.get_hierarchy()
    y = (torch.rand(4, hier.num_nodes, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    with torch.no_grad():
        out = model(torch.randn(4, 3, SIZE, SIZE), labels=y)
        members = torch.as_tensor(numpy_member_logits(model, out.features.double().numpy()), dtype=torch.float32)
        w = bit_weights(torch.tensor(weights), y, "all")
        per_member = [model.criterion(lg, y, torch.ones_like(y), w).loss for lg in members]
    assert out.loss.item() == pytest.approx(torch.stack(per_member).mean().item(), rel=1e-5)
    with torch.no_grad():
        unweighted = [model.criterion(lg, y, torch.ones_like(y)).loss for lg in members]
    assert out.loss.item() != pytest.approx(torch.stack(unweighted).mean().item(), rel=1e-3)


def test_mc_dropout_members_in_eval_mode_only():
    model = make_model(8, members=1, ensemble_dropout_samples=4, head_dropout=0.5)
    x = torch.randn(3, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.manual_seed(0)
        a = model(x)
        torch.manual_seed(0)
        b = model(x)
    assert a.member_probabilities.shape == (3, 4, 13)
    assert torch.equal(a.probabilities, b.probabilities)  # seeded masks: reproducible
    assert (a.member_probabilities[:, 0] - a.member_probabilities[:, 1]).abs().max() > 1e-3
    torch.testing.assert_close(a.probabilities, a.member_probabilities.mean(1))
    assert not model.heads.heads[0].drop.training  # dropout is back in eval mode afterwards
    model.set_mc_dropout(0)
    with torch.no_grad():
        plain = model(x)
    assert plain.member_probabilities is None and plain.uncertainty is None
    model.train()
    model.set_mc_dropout(4)
    assert model(x).member_probabilities is None  # training: no MC passes, dropout is on anyway


def test_mc_dropout_over_an_ensemble_orders_members_by_head_stack():
    model = make_model(8, members=2, ensemble_dropout_samples=3, head_dropout=0.3)
    with torch.no_grad():
        for head in model.heads.heads:
            head.fc2.bias[1] += 20.0  # member 1 scores near 1 everywhere
        out = model(torch.randn(2, 3, SIZE, SIZE))
    members = out.member_probabilities  # (B, K·S, N), member k·S + s
    assert members.shape == (2, 6, 13)
    assert members[:, 3:].min() > 0.99 and members[:, :3].mean() < 0.9


# --------------------------------------------------------------------------------- save and load
def test_ensemble_save_load_round_trip_is_exact(tmp_path):
    model = make_model(8, ensemble_dropout_samples=2, uncertainty="epistemic")
    model.save_pretrained(tmp_path)
    back = BenthicNetForHierarchicalClassification.from_pretrained(tmp_path).eval()
    assert (back.config.ensemble_size, back.config.ensemble_dropout_samples, back.config.uncertainty) == (
        K, 2, "epistemic")
    for key, value in model.state_dict().items():
        assert torch.equal(value, back.state_dict()[key]), key
    x, y = torch.randn(2, 3, SIZE, SIZE), torch.ones(2, 13)
    with torch.no_grad():
        torch.manual_seed(0)
        a = model(x, labels=y)
        torch.manual_seed(0)
        b = back(x, labels=y)
    # weights are equal bit for bit; outputs up to float rounding, because the loaded (memory-mapped)
    # tensors need not share the originals' 64-byte alignment, which changes the CPU kernels' paths
    for name in ("loss", "logits", "probabilities", "member_probabilities", "uncertainty"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=1e-5, msg=name)


@pytest.mark.parametrize("saved, loaded", [(K, 2), (K, 1), (1, K)])
def test_ensemble_size_mismatch_is_named(tmp_path, saved, loaded):
    make_model(8, members=saved).save_pretrained(tmp_path)
    match = rf"checkpoint has {saved} ensemble member\(s\), config has ensemble_size={loaded}"
    with pytest.raises(ValueError, match=match):
        BenthicNetForHierarchicalClassification.from_pretrained(tmp_path, ensemble_size=loaded)


def test_pipeline_batches_ensemble_outputs(tmp_path):
    model = make_model(8)
    model.save_pretrained(tmp_path)
    rng = np.random.default_rng(1)
    imgs = [Image.fromarray((rng.random((40, 50, 3)) * 255).astype(np.uint8)) for _ in range(5)]
    pipe = pipeline("image-classification", model=str(tmp_path), trust_remote_code=True, top_k=13)
    results = pipe(imgs, batch_size=2)  # 2 < K: members must not be split as if they were the batch
    pv = make_image_processor(model.config)(imgs, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        probs = model(pv).probabilities.numpy()
    labels = model.config.get_hierarchy().labels
    for result, expected in zip(results, probs):
        got = {r["label"]: r["score"] for r in result}
        np.testing.assert_allclose([got[lbl] for lbl in labels], expected, atol=1e-6)


# ------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def cli_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    hierarchy = Hierarchy.catami().subset(["substrate", "colour"])
    folders = {}
    for name, members in (("ensemble", K), ("single", 1)):
        torch.manual_seed(0)
        config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=hierarchy.to_list(), head_hidden_dim=0,
                                  image_size=SIZE, ensemble_size=members, head_dropout=0.5)
        model = BenthicNetForHierarchicalClassification(config).eval()
        with torch.no_grad():  # spread the scores so that several depths clear the threshold
            for p in model.heads.parameters():
                p.mul_(8.0)
        folders[name] = tmp_path_factory.mktemp(name)
        model.save_pretrained(folders[name])
    images = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40 + i, 48, 3), dtype=np.uint8)).save(images / f"img_{i}.png")
    folders["images"] = images
    return folders


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_predict_uncertainty_column_is_the_deepest_nodes_uncertainty(cli_models, tmp_path):
    out = tmp_path / "p.csv"
    rc = main(["predict", "--model", str(cli_models["ensemble"]), str(cli_models["images"]), "--output", str(out),
               "--batch_size", "3", "--no_progress", "--uncertainty"])
    assert rc == 0
    rows = read_rows(out)
    model = BenthicNetForHierarchicalClassification.from_pretrained(cli_models["ensemble"]).eval()
    hierarchy = model.config.get_hierarchy()
    assert list(rows[0]) == ["image", "error"] + [
        f"{h}_{c}" for h in hierarchy.head_names for c in ("paths", "deepest", "score", "uncertainty")]
    pv = make_image_processor(model.config)([Image.open(r["image"]).convert("RGB") for r in rows],
                                            return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        result = model(pv)
    checked = 0
    for row, p, u in zip(rows, result.probabilities.numpy(), result.uncertainty.numpy()):
        for head in hierarchy.head_names:
            key = row[f"{head}_deepest"]
            if not key:
                assert row[f"{head}_uncertainty"] == ""
                continue
            i = hierarchy.index(head, key)
            assert float(row[f"{head}_score"]) == pytest.approx(p[i], abs=1e-5)
            assert float(row[f"{head}_uncertainty"]) == pytest.approx(u[i], abs=1e-5)
            assert u[i] == pytest.approx(1 - abs(2 * p[i] - 1), abs=1e-5)  # bBMA of the mean score
            checked += 1
    assert checked > 0


def test_predict_uncertainty_needs_an_ensemble_or_mc_dropout(cli_models, tmp_path, capsys):
    out = tmp_path / "p.csv"
    args = ["predict", "--model", str(cli_models["single"]), str(cli_models["images"]), "--output", str(out),
            "--no_progress", "--uncertainty"]
    assert main(args) == 2
    assert "--uncertainty needs an ensemble" in capsys.readouterr().err
    assert main(args + ["--mc_dropout", "4"]) == 0
    rows = read_rows(out)
    assert any(r["substrate_uncertainty"] for r in rows)
    first = [r["substrate_score"] for r in rows]
    assert main(args + ["--mc_dropout", "4"]) == 0  # seeded: the same passes again
    assert [r["substrate_score"] for r in read_rows(out)] == first
    assert main(args + ["--uncertainty_mode", "gmu", "--mc_dropout", "4"]) == 0
    assert main(args + ["--uncertainty_mode", "nope", "--mc_dropout", "4"]) == 2
    assert "uncertainty must be one of" in capsys.readouterr().err


def test_predict_without_uncertainty_keeps_the_columns(cli_models, tmp_path):
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(cli_models["ensemble"]), str(cli_models["images"]), "--output", str(out),
                 "--no_progress"]) == 0
    assert not any(c.endswith("_uncertainty") for c in read_rows(out)[0])


# -------------------------------------------------------------------------- training helpers
def test_training_helpers_handle_stacked_heads():
    from benthicnet_hf.training.bias_init import init_head_biases
    from benthicnet_hf.training.loop import param_groups
    from benthicnet_hf.widget_export import WidgetExportError, stacked_linear_heads

    model = make_model(0)
    hier = model.config.get_hierarchy()
    rng = np.random.default_rng(0)
    y = (rng.random((20, hier.num_nodes)) < 0.3).astype(np.float32)
    bias = init_head_biases(model, y, np.ones_like(y))
    for i, head in enumerate(model.heads.heads):
        assert head.fc.bias.shape == (K, len(hier.heads[i].nodes))
        for k in range(K):
            torch.testing.assert_close(head.fc.bias[k], bias[hier.head_slice(i)])
    groups = param_groups(model, weight_decay=0.1, lr=1e-3)
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(model.heads.heads[0].fc.bias) in no_decay and id(model.heads.heads[0].fc.weight) not in no_decay
    with pytest.raises(WidgetExportError, match="ensemble of 3 head stacks"):
        stacked_linear_heads(model)
