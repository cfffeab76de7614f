"""The transformers model: config, forward against numpy references, coherence, loss, freezing,
save/load round trips, image processor vs timm, pipeline, bad-input errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from transformers import AutoConfig, AutoModelForImageClassification, pipeline

from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
from benthicnet_hf.hierarchy import Taxonomy, Hierarchy
from benthicnet_hf.image_processing import make_image_processor
from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification, BenthicNetModel

SIZE = 32


def small_hierarchy() -> Hierarchy:
    # heads deliberately not in alphabetical order (config.json is written with sorted keys)
    tree = Taxonomy.from_paths("zeta", ["A", "A > B", "A > B > C", "A > D", "E", "E > F"])
    dag = Taxonomy("beta", ("r", "x", "y", "z"), ((), (0,), (0,), (1, 2)), kind="dag", sep="")
    flat = Taxonomy.flat("alpha", ["red", "green", "blue"])
    return Hierarchy((tree, dag, flat))


def make_model(hidden: int = 8, hierarchy: Hierarchy | None = None, **kw) -> BenthicNetForHierarchicalClassification:
    torch.manual_seed(0)
    config = BenthicNetConfig(
        encoder_name=kw.pop("encoder_name", "test_resnet"), hierarchy=(hierarchy or small_hierarchy()).to_list(),
        head_hidden_dim=hidden, image_size=SIZE, **kw,
    )
    model = BenthicNetForHierarchicalClassification(config)
    # non-trivial BatchNorm statistics, so that the numpy reference must apply them
    for head in model.heads.heads:
        head.norm.running_mean.normal_()
        head.norm.running_var.uniform_(0.5, 2.0)
    return model.eval()


def numpy_mlp_heads(model, features: np.ndarray) -> np.ndarray:
    """BN(affine=False) → Linear → ReLU → Linear per head, concatenated (eval mode)."""
    outs = []
    for head in model.heads.heads:
        bn = head.norm
        z = (features - bn.running_mean.numpy()) / np.sqrt(bn.running_var.numpy() + bn.eps)
        if hasattr(head, "fc1"):
            z = np.maximum(z @ head.fc1.weight.detach().numpy().T + head.fc1.bias.detach().numpy(), 0)
            z = z @ head.fc2.weight.detach().numpy().T + head.fc2.bias.detach().numpy()
        else:
            z = z @ head.fc.weight.detach().numpy().T + head.fc.bias.detach().numpy()
        outs.append(z)
    return np.concatenate(outs, axis=1)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def dense_mcm_probs(hierarchy: Hierarchy, logits: np.ndarray) -> np.ndarray:
    """The C-HMCNN formula in probability space: max_j R[i, j] * p[b, j]."""
    r = hierarchy.dense_ancestor_matrix().astype(np.float64)
    return (r[None] * sigmoid(logits.astype(np.float64))[:, None, :]).max(-1)


# ------------------------------------------------------------------------------------------ config
def test_config_labels_follow_hierarchy_and_survive_json(tmp_path):
    hier = small_hierarchy()
    config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=hier.to_list())
    assert config.num_labels == hier.num_nodes == 13
    assert [config.id2label[i] for i in range(13)] == hier.labels
    assert config.id2label[0] == "zeta: A" and config.problem_type == "multi_label_classification"
    config.save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    assert [h["name"] for h in raw["hierarchy"]] == ["zeta", "beta", "alpha"]
    back = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(back, BenthicNetConfig)
    assert back.get_hierarchy().labels == hier.labels
    assert [back.id2label[i] for i in range(13)] == hier.labels


def test_default_config_is_catami_with_reference_head():
    config = BenthicNetConfig()
    assert config.num_labels == 324 and config.encoder_name == "resnet50"
    assert (config.head_hidden_dim, config.head_dropout, config.crop_pct) == (2048, 0.7, 0.875)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(output_type="softmax"), "output_type"),
        (dict(encoder_kwargs={"num_classes": 3}), "num_classes"),
        (dict(node_weights=[1.0, 2.0]), "node_weights has 2 entries"),
        (dict(id2label={0: "nope"}), "id2label does not match"),
    ],
)
def test_config_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BenthicNetConfig(encoder_name="test_resnet", hierarchy=small_hierarchy().to_list(), **kwargs)


def test_auto_classes_are_registered():
    config = AutoConfig.for_model("benthicnet", encoder_name="test_resnet", hierarchy=small_hierarchy().to_list())
    model = AutoModelForImageClassification.from_config(config)
    assert isinstance(model, BenthicNetForHierarchicalClassification)


# ----------------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("hidden", [8, 0])
def test_forward_matches_numpy_reference(hidden):
    model = make_model(hidden)
    x = torch.randn(4, 3, SIZE, SIZE)
    with torch.no_grad():
        out = model(x)
        feats = timm_features(model, x)
    hier = model.config.get_hierarchy()
    assert out.logits.shape == out.probabilities.shape == (4, hier.num_nodes)
    np.testing.assert_allclose(out.features.numpy(), feats, atol=1e-6)
    ref_logits = numpy_mlp_heads(model, feats.astype(np.float64))
    np.testing.assert_allclose(out.logits.numpy(), ref_logits, atol=1e-5)
    np.testing.assert_allclose(out.probabilities.numpy(), dense_mcm_probs(hier, ref_logits), atol=1e-6)


def timm_features(model, x):
    """Pooled features of a fresh timm model carrying the same weights (timm-native keys)."""
    ref = timm.create_model("test_resnet", pretrained=False, num_classes=0).eval()
    ref.load_state_dict(model.backbone.state_dict())
    return ref(x).numpy()


def test_base_model_pools_features():
    config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=small_hierarchy().to_list())
    model = BenthicNetModel(config).eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert model(x).pooler_output.shape == (2, model.backbone.num_features)
        np.testing.assert_allclose(model(x).pooler_output.numpy(), model.backbone(x).numpy(), atol=1e-6)


def test_catami_outputs_are_coherent():
    hier = Hierarchy.catami()
    model = make_model(16, hier)
    with torch.no_grad():  # push leaf logits up so that raw scores are incoherent
        for i, head in enumerate(model.heads.heads):
            s = hier.head_slice(i)
            head.fc2.bias.copy_(torch.as_tensor(hier.is_leaf[s] * 3.0 - 1.5))
        out = model(torch.randn(6, 3, SIZE, SIZE))
    child = np.repeat(np.arange(hier.num_nodes), hier.parents_padded.shape[1])
    parent = hier.parents_padded.reshape(-1)
    keep = parent >= 0
    child, parent = child[keep], parent[keep]
    raw, coh = out.logits.numpy(), out.probabilities.numpy()
    assert (raw[:, child] > raw[:, parent]).any(), "test set-up: raw logits should be incoherent"
    assert (coh[:, child] <= coh[:, parent]).all()


# -------------------------------------------------------------------------------------------- loss
def numpy_mcloss(hier: Hierarchy, logits, y, mask) -> float:
    """Paper MCLoss in probability space + three-level masking, written per head with loops."""
    r = hier.dense_ancestor_matrix().astype(np.float64)
    p = sigmoid(logits.astype(np.float64))
    y = y * mask  # only known bits are targets: an unknown y = 1 must not feed MCM(y·p)
    per_head = []
    for h in range(len(hier.heads)):
        s = hier.head_slice(h)
        sample_losses = []
        for b in range(p.shape[0]):
            known = mask[b, s] > 0
            if not known.any():
                continue
            mcm = (r * p[b][None, :]).max(1)
            mcm_pos = (r * (y[b] * p[b])[None, :]).max(1)
            hh = ((1 - y[b]) * mcm + y[b] * mcm_pos)[s]
            hh = np.clip(hh, 1e-12, 1 - 1e-12)
            bce = -(y[b, s] * np.log(hh) + (1 - y[b, s]) * np.log(1 - hh))
            sample_losses.append(bce[known].mean())
        if sample_losses:
            per_head.append(np.mean(sample_losses))
    return float(np.mean(per_head))


def test_loss_matches_paper_formula_with_masks():
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
    ref = numpy_mcloss(hier, out.logits.double().numpy(), y, mask)
    assert out.loss.item() == pytest.approx(ref, rel=1e-5)
    with torch.no_grad():
        no_mask = model(x, labels=torch.as_tensor(y)).loss.item()
    assert no_mask == pytest.approx(numpy_mcloss(hier, out.logits.double().numpy(), y, np.ones_like(y)), rel=1e-5)


def test_frozen_encoder_gets_no_gradient_and_keeps_bn_stats():
    model = make_model(8, freeze_encoder=True)
    model.train()
    assert not model.backbone.training and model.heads.training
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    hier = model.config.get_hierarchy()
    out = model(torch.randn(4, 3, SIZE, SIZE), labels=torch.ones(4, hier.num_nodes))
    out.loss.backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.heads.parameters())
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, before[k]), k
    model.set_encoder_frozen(False)
    model.train()
    assert model.backbone.training and all(p.requires_grad for p in model.backbone.parameters())


# ------------------------------------------------------------------------------------ save / load
def test_save_load_round_trip_is_exact(tmp_path):
    model = make_model(8, node_weights=[float(i % 3 + 1) for i in range(13)])
    model.save_pretrained(tmp_path)
    assert {"model.safetensors", "config.json", "preprocessor_config.json"} <= {p.name for p in tmp_path.iterdir()}
    back = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert isinstance(back, BenthicNetForHierarchicalClassification)
    assert any(k.startswith("backbone.conv1") for k in back.state_dict())  # timm-native keys
    for k, v in model.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    assert torch.equal(back.node_weights, model.node_weights)
    assert torch.equal(back.constraint.ancestor_pairs, torch.as_tensor(small_hierarchy().ancestor_pairs))
    x = torch.randn(2, 3, SIZE, SIZE)
    y = torch.ones(2, 13)
    with torch.no_grad():
        a, b = model(x, labels=y), back(x, labels=y)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.probabilities, b.probabilities)
    assert torch.equal(a.loss, b.loss)


def test_bf16_save_loads_as_bf16_and_exact(tmp_path):
    model = make_model(8).to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    back = AutoModelForImageClassification.from_pretrained(tmp_path)  # dtype="auto"
    assert back.dtype == torch.bfloat16
    for k, v in model.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    as_fp32 = AutoModelForImageClassification.from_pretrained(tmp_path, dtype=torch.float32)
    assert as_fp32.dtype == torch.float32
    assert torch.equal(as_fp32.heads.heads[0].fc2.weight, model.heads.heads[0].fc2.weight.float())


# ------------------------------------------------------------------------------- image processor
def test_image_processor_reproduces_timm_eval_transform():
    config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=small_hierarchy().to_list(), image_size=48)
    proc = make_image_processor(config)
    tf = timm.data.create_transform(
        input_size=(3, 48, 48), interpolation="bicubic", crop_pct=0.875, crop_mode="center",
        mean=config.image_mean, std=config.image_std,
    )
    rng = np.random.default_rng(0)
    for shape in [(90, 70, 3), (50, 120, 3)]:
        img = Image.fromarray((rng.random(shape) * 255).astype(np.uint8))
        ours = proc(img, return_tensors="pt")["pixel_values"][0]
        assert ours.shape == (3, 48, 48)
        torch.testing.assert_close(ours, tf(img), atol=2e-2, rtol=0)  # rounding of resampled pixels
        assert (ours - tf(img)).abs().mean() < 2e-3


# -------------------------------------------------------------------------------------- pipeline
def test_pipeline_reports_coherent_scores(tmp_path):
    model = make_model(8)
    model.save_pretrained(tmp_path)
    rng = np.random.default_rng(1)
    img = Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8))
    pipe = pipeline("image-classification", model=str(tmp_path), trust_remote_code=True, top_k=13)
    result = pipe(img)
    assert len(result) == 13
    hier = small_hierarchy()
    assert sorted(r["label"] for r in result) == sorted(hier.labels)
    pv = make_image_processor(model.config)(img, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        logits = model(pv).logits.numpy()
    expected = dense_mcm_probs(hier, logits)[0]
    got = {r["label"]: r["score"] for r in result}
    np.testing.assert_allclose([got[lbl] for lbl in hier.labels], expected, atol=1e-6)
    assert len(pipe(img, top_k=3)) == 3


# ------------------------------------------------------------------------------------- bad input
def test_bad_pixel_values_and_labels_are_named():
    model = make_model(8)
    with pytest.raises(ValueError, match=r"\(batch, 3, height, width\), got \(2, 1, 32, 32\)"):
        model(torch.randn(2, 1, SIZE, SIZE))
    with pytest.raises(ValueError, match=r"got \(3, 32, 32\)"):
        model(torch.randn(3, SIZE, SIZE))
    x = torch.randn(2, 3, SIZE, SIZE)
    with pytest.raises(ValueError, match=r"labels must have shape \(batch, num_nodes\) = \(2, 13\), got \(2, 12\)"):
        model(x, labels=torch.ones(2, 12))
    with pytest.raises(ValueError, match=r"label_mask must have the shape of labels \(2, 13\), got \(2, 14\)"):
        model(x, labels=torch.ones(2, 13), label_mask=torch.ones(2, 14))


def test_vit_wrong_image_size_is_named():
    kwargs = {"img_size": SIZE, "dynamic_img_size": False}  # test_vit defaults to dynamic sizes
    model = make_model(8, encoder_name="test_vit", encoder_kwargs=kwargs)
    assert model(torch.randn(1, 3, SIZE, SIZE)).logits.shape == (1, 13)
    with pytest.raises(ValueError, match=r"takes \(32, 32\) images, got pixel_values of shape \(1, 3, 48, 48\)"):
        model(torch.randn(1, 3, 48, 48))


def test_unknown_encoder_lists_close_matches():
    config = BenthicNetConfig(encoder_name="resnet5O", hierarchy=small_hierarchy().to_list())
    with pytest.raises(ValueError, match=r"unknown timm encoder_name 'resnet5O'.*resnet50"):
        BenthicNetForHierarchicalClassification(config)


def test_hierarchy_mismatch_with_checkpoint_names_the_head(tmp_path):
    make_model(8).save_pretrained(tmp_path)
    hier = small_hierarchy()
    smaller = Hierarchy((hier.heads[0], Taxonomy("beta", ("r", "x"), ((), (0,)), kind="dag", sep=""), hier.heads[2]))
    config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=smaller.to_list(), head_hidden_dim=8)
    with pytest.raises(ValueError, match=r"head 1 'beta': config has 2 nodes, checkpoint has 4"):
        BenthicNetForHierarchicalClassification.from_pretrained(tmp_path, config=config)


# ------------------------------------------------------------------------------- encoder weights
def test_load_encoder_from_lightning_checkpoint(tmp_path):
    source = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)  # differs from any fresh init
    ckpt = {"state_dict": {f"backbone.{k}": v for k, v in source.state_dict().items()}}
    torch.save(ckpt, tmp_path / "ssl.ckpt")
    model = make_model(8)
    heads_before = {k: v.clone() for k, v in model.heads.state_dict().items()}
    model.load_encoder(tmp_path / "ssl.ckpt")
    for k, v in source.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v), k
    for k, v in model.heads.state_dict().items():
        assert torch.equal(v, heads_before[k]), k
