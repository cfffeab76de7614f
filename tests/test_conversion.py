"""Checkpoint import: safe reading, explicit torchvision -> timm key maps, strict loading.

The references are independent: torchvision's own forward pass (the converted timm model must give the
same features), the tensors we wrote ourselves, and marker files a malicious pickle would create.
"""

from __future__ import annotations

import logging
import sys
import textwrap
from collections import OrderedDict

import pytest
import timm
import torch
import torchvision
from safetensors import safe_open
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer as TimmViT
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

from benthicnet_hf.checkpoint_io import CheckpointReadError, Placeholder, PlaceholderList, load_torch_weights_only
from benthicnet_hf.conversion import (
    CheckpointMismatchError,
    convert_torchvision_resnet,
    convert_torchvision_vit,
    detect_checkpoint_format,
    load_encoder_weights,
    read_checkpoint_tensors,
    save_encoder_safetensors,
)


def _randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give norm affines, BN running stats, biases and the class token distinct random values.

    Their default inits (1/0, zeros) would hide swapped keys; conv/linear weights are random already.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point() or (tensor.ndim > 1 and name != "class_token"):
                continue
            noise = torch.randn(tensor.shape, generator=gen) * 0.05
            if name.endswith("running_var"):
                tensor.copy_(1.0 + noise.abs() * 4)
            elif name.endswith("weight"):  # 1-D weights are norm scales
                tensor.copy_(1.0 + noise)
            else:
                tensor.add_(noise)
    return module.eval()


def _small_vits(num_classes: int = 0) -> tuple[TorchvisionViT, TimmViT]:
    torch.manual_seed(0)
    tv = TorchvisionViT(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                        num_classes=max(num_classes, 1))
    tm = TimmViT(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2, num_classes=num_classes)
    return _randomize_(tv), tm.eval()


# --------------------------------------------------------------------------------------------- identical outputs
def test_resnet50_torchvision_and_converted_timm_give_identical_outputs():
    tv = _randomize_(torchvision.models.resnet50())
    tm = timm.create_model("resnet50", pretrained=False, num_classes=1000).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    report = load_encoder_weights(tm, tv.state_dict(), ignore_classifier=False)
    assert report.converted_from == "torchvision_resnet" and report.ok and report.loaded == len(tv.state_dict())
    with torch.no_grad():
        assert torch.allclose(tm(x), tv(x), atol=1e-5)
        tv.fc = torch.nn.Identity()
        features = tv(x)
        tm.reset_classifier(0)
        torch.nn.init.normal_(tm.layer4[2].bn3.weight)  # make sure the second load really writes
        report = load_encoder_weights(tm, tv.state_dict())
        assert report.ignored == [] and report.ok  # the Identity fc has no keys
        assert torch.allclose(tm(x), features, atol=1e-5)


def test_small_vit_torchvision_and_converted_timm_give_identical_features_and_logits():
    tv, tm = _small_vits(num_classes=10)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with_head = dict(tv.state_dict())
    report = load_encoder_weights(tm, with_head, ignore_classifier=False)
    assert report.converted_from == "torchvision_vit" and report.ok
    with torch.no_grad():
        assert torch.allclose(tm(x), tv(x), atol=1e-5)
        tv.heads = torch.nn.Identity()
        features = tv(x)
    _, encoder = _small_vits(num_classes=0)
    report = load_encoder_weights(encoder, with_head, ignore_classifier=True)
    assert report.ignored == ["head.bias", "head.weight"] and report.ok
    with torch.no_grad():
        assert torch.allclose(encoder(x), features, atol=1e-5)


def test_legacy_torchvision_mlp_names_are_mapped():
    tv, tm = _small_vits()
    legacy = {k.replace("mlp.0.", "mlp.linear_1.").replace("mlp.3.", "mlp.linear_2."): v
              for k, v in tv.state_dict().items()}
    assert any("linear_1" in k for k in legacy)
    load_encoder_weights(tm, legacy)
    tv.heads = torch.nn.Identity()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(tm(x), tv(x), atol=1e-5)


def test_real_vit_b16_key_set_maps_onto_timm_vit_base_with_matching_shapes():
    with torch.device("meta"):  # real architectures, no memory and no init cost
        tv = torchvision.models.vit_b_16()
        tm = timm.create_model("vit_base_patch16_224", pretrained=False)
    tv_state, tm_state = tv.state_dict(), tm.state_dict()
    assert detect_checkpoint_format(tv_state) == "torchvision_vit"
    converted = convert_torchvision_vit(tv_state)
    assert set(converted) == set(tm_state)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in tm_state.items()}
    # explicit names, not positions: spot-check the rules the issue lists
    layer_11 = "encoder.layers.encoder_layer_11."
    assert converted["blocks.11.attn.qkv.weight"] is tv_state[layer_11 + "self_attention.in_proj_weight"]
    assert converted["blocks.3.mlp.fc2.bias"] is tv_state["encoder.layers.encoder_layer_3.mlp.3.bias"]


def test_detect_checkpoint_format():
    assert detect_checkpoint_format(torchvision.models.resnet18().state_dict()) == "torchvision_resnet"
    assert detect_checkpoint_format(_small_vits()[0].state_dict()) == "torchvision_vit"
    assert detect_checkpoint_format(timm.create_model("test_vit", pretrained=False).state_dict()) == "timm"
    assert detect_checkpoint_format(timm.create_model("test_resnet", pretrained=False).state_dict()) == "timm"


def test_converters_reject_keys_no_rule_names():
    state = dict(_small_vits()[0].state_dict())
    state["heads.pre_logits.weight"] = torch.zeros(2, 2)
    with pytest.raises(CheckpointMismatchError, match="heads.pre_logits.weight"):
        convert_torchvision_vit(state)
    resnet = dict(torchvision.models.resnet18().state_dict())
    resnet["layer5.0.conv1.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match="layer5.0.conv1.weight"):
        convert_torchvision_resnet(resnet)


# --------------------------------------------------------------------------------------------- wrapped checkpoints
def test_lightning_ckpt_with_backbone_prefix_picks_online_encoder(tmp_path):
    source = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    online = {k: torch.randn(v.shape) if v.is_floating_point() else v for k, v in source.state_dict().items()}
    momentum = {k: v + 1 if v.is_floating_point() else v for k, v in online.items()}
    state = {f"backbone.{k}": v for k, v in online.items()}
    state |= {f"momentum_backbone.{k}": v for k, v in momentum.items()}
    state |= {"projector.0.weight": torch.randn(8, 4), "classifier.weight": torch.randn(3, 4)}
    path = tmp_path / "solo.ckpt"
    torch.save({"state_dict": state, "epoch": 7, "hyper_parameters": {"lr": 0.1}}, path)

    model = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    report = load_encoder_weights(model, path)
    assert report.prefix == "backbone." and report.converted_from == "timm" and report.ok
    for key, value in model.state_dict().items():
        assert torch.equal(value, online[key]), key
    report = load_encoder_weights(model, path, prefix="momentum_backbone.")
    for key, value in model.state_dict().items():
        assert torch.equal(value, momentum[key]), key


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_wrapped_torchvision_resnet_with_encoder_prefix_file(tmp_path, suffix):
    tv = _randomize_(torchvision.models.resnet18())
    state = {f"encoder.{k}": v for k, v in tv.state_dict().items()} | {"head.proj.weight": torch.randn(4, 4)}
    path = tmp_path / f"enc{suffix}"
    if suffix == ".ckpt":
        torch.save({"state_dict": state, "optimizer_states": [{"lr": 1e-3}]}, path)
    else:
        save_file(state, str(path))
    model = timm.create_model("resnet18", pretrained=False, num_classes=0).eval()
    report = load_encoder_weights(model, path)
    assert (report.prefix, report.converted_from) == ("encoder.", "torchvision_resnet")
    assert report.ignored == ["fc.bias", "fc.weight"]
    tv.fc = torch.nn.Identity()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(model(x), tv(x), atol=1e-5)


def test_wrapped_torchvision_vit_under_encoder_prefix_and_nested_wrappers(tmp_path):
    tv, tm = _small_vits()
    # DDP "module." on every key, nested {"model": {"module": ...}} containers, torchvision's own "encoder." keys inside
    state = {f"module.encoder.{k}": v for k, v in tv.state_dict().items()}
    path = tmp_path / "vit.pth"
    torch.save({"model": {"module": state}}, path)
    report = load_encoder_weights(tm, path)
    assert (report.prefix, report.converted_from) == ("encoder.", "torchvision_vit")
    tv.heads = torch.nn.Identity()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(tm(x), tv(x), atol=1e-5)


def test_save_encoder_safetensors_round_trip_without_conversion(tmp_path):
    model = _randomize_(timm.create_model("test_vit", pretrained=False, num_classes=5))
    path = save_encoder_safetensors(model, tmp_path / "ssl" / "encoder.safetensors", metadata={"epochs": 100})
    with safe_open(str(path), framework="pt") as handle:
        keys, meta = set(handle.keys()), handle.metadata()
    assert not any(k.startswith("head.") for k in keys) and "cls_token" in keys
    assert meta["format"] == "timm" and meta["epochs"] == "100" and meta["architecture"] == "test_vit"
    fresh = timm.create_model("test_vit", pretrained=False, num_classes=0).eval()
    report = load_encoder_weights(fresh, path)
    assert report.converted_from == "timm" and report.prefix == "" and report.ok
    assert load_encoder_weights(fresh, path.parent).converted_from == "timm"  # a folder: finds encoder.safetensors
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        assert torch.equal(fresh.forward_features(x), model.forward_features(x))
    # a timm ResNet saved this way is read back as timm too (metadata), not as "torchvision_resnet"
    resnet = timm.create_model("resnet18", pretrained=False)
    report = load_encoder_weights(resnet, save_encoder_safetensors(resnet, tmp_path / "r.safetensors"))
    assert report.converted_from == "timm"


# --------------------------------------------------------------------------------------------- strictness
def test_strict_reports_every_missing_and_unexpected_key(caplog):
    tv, tm = _small_vits()
    state = dict(tv.state_dict())
    del state["encoder.layers.encoder_layer_1.ln_2.bias"]
    state["encoder.layers.encoder_layer_1.extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointMismatchError) as err:
        load_encoder_weights(tm, state)
    assert "blocks.1.norm2.bias" in str(err.value) and "encoder.layers.encoder_layer_1.extra.weight" in str(err.value)
    with caplog.at_level(logging.WARNING, logger="benthicnet_hf.conversion"):
        report = load_encoder_weights(tm, state, strict=False)
    assert report.missing == ["blocks.1.norm2.bias"]
    assert report.unexpected == ["encoder.layers.encoder_layer_1.extra.weight"]
    assert any("partial encoder load" in r.message for r in caplog.records)
    in_proj = tv.state_dict()["encoder.layers.encoder_layer_0.self_attention.in_proj_weight"]
    assert torch.equal(tm.blocks[0].attn.qkv.weight, in_proj)


def test_shape_mismatch_names_key_and_both_shapes():
    tv = torchvision.models.resnet18()
    model = timm.create_model("resnet34", pretrained=False, num_classes=0)  # same names for layer1.0 ..., more blocks
    state = dict(tv.state_dict())
    state["conv1.weight"] = torch.zeros(64, 3, 5, 5)
    expected = r"'conv1.weight': checkpoint \[64, 3, 5, 5\] vs model \[64, 3, 7, 7\]"
    with pytest.raises(CheckpointMismatchError, match=expected):
        load_encoder_weights(model, state, strict=False)


def test_unrelated_checkpoint_and_unknown_prefix_are_clear_errors():
    model = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    with pytest.raises(CheckpointMismatchError, match=r"prefixes: \['decoder.'\]"):
        load_encoder_weights(model, {"decoder.w": torch.zeros(1)})
    with pytest.raises(CheckpointMismatchError, match="no checkpoint key starts with prefix 'backbone.'"):
        load_encoder_weights(model, {"decoder.w": torch.zeros(1)}, prefix="backbone.")


def test_loading_into_a_meta_model_is_refused_not_silently_skipped():
    with torch.device("meta"):
        model = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    with pytest.raises(ValueError, match="meta device"):
        load_encoder_weights(model, {"conv1.0.weight": torch.zeros(1)})


def test_reading_errors_name_the_file_and_keys(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        read_checkpoint_tensors(tmp_path / "nope.ckpt")
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "note": "no weights"}, path)
    with pytest.raises(CheckpointReadError, match=r"meta.pt: no tensors found; top-level keys are \['epoch', 'note'\]"):
        read_checkpoint_tensors(path)


# --------------------------------------------------------------------------------------------- no code execution
THROWAWAY_MODULE = '''
import os

MARK = {mark!r}


def touch(name):
    open(os.path.join(MARK, name), "w").close()


class HyperParameters:
    """What Lightning pickles into hyper_parameters: every hook leaves a marker file."""

    def __new__(cls, *args, **kwargs):
        touch("new")
        return super().__new__(cls)

    def __init__(self, lr):
        touch("init")
        self.lr = lr

    def __setstate__(self, state):
        touch("setstate")
        self.__dict__.update(state)


class LightningAttributeDict(dict):
    def __init__(self, *args, **kwargs):
        touch("dict_init")
        super().__init__(*args, **kwargs)


class ListOfThings(list):
    def __setstate__(self, state):
        touch("list_setstate")


class CallsFunction:
    def __reduce__(self):
        return (touch, ("reduce_function",))


class CallsExec:
    def __reduce__(self):
        return (exec, ("open(" + repr(os.path.join(MARK, "reduce_exec")) + ", 'w').close()",))


class CallsOpen:
    def __reduce__(self):
        return (open, (os.path.join(MARK, "reduce_open"), "w"))


class CallsSystem:
    def __reduce__(self):
        return (os.system, ("touch " + os.path.join(MARK, "reduce_system"),))
'''


@pytest.fixture
def throwaway(tmp_path, monkeypatch):
    """A module defined only for this test, importable while the checkpoint is saved; markers go to ``marks/``."""
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "throwaway_hparams.py").write_text(textwrap.dedent(THROWAWAY_MODULE.format(mark=str(marks))))
    monkeypatch.syspath_prepend(str(tmp_path))
    import throwaway_hparams

    yield throwaway_hparams, marks
    sys.modules.pop("throwaway_hparams", None)


@pytest.mark.parametrize(("module_importable_at_load", "zip_format"), [(True, True), (False, True), (False, False)])
def test_foreign_hyper_parameters_become_inert_placeholders(
    tmp_path, throwaway, monkeypatch, module_importable_at_load, zip_format
):
    module, marks = throwaway
    weights = {"backbone.w": torch.arange(4.0)}
    path = tmp_path / "lightning.ckpt"
    things = module.ListOfThings([1, 2])
    things.tag = "x"  # gives the list a state, so the unpickler BUILDs it
    hyper = {"cfg": module.HyperParameters(0.1), "attrs": module.LightningAttributeDict(lr=0.5), "things": things}
    checkpoint = {"state_dict": weights, "hyper_parameters": hyper}
    # the legacy (pre-1.6) format cannot be scanned statically: placeholders are then added one refusal at a time
    torch.save(checkpoint, path, _use_new_zipfile_serialization=zip_format)
    for marker in marks.iterdir():  # constructing the object above left markers; only loading counts
        marker.unlink()
    if not module_importable_at_load:
        monkeypatch.delitem(sys.modules, "throwaway_hparams")
        monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])

    assert torch.equal(read_checkpoint_tensors(path)["backbone.w"], weights["backbone.w"])
    hyper = load_torch_weights_only(path)["hyper_parameters"]
    loaded = hyper["cfg"]
    assert isinstance(loaded, Placeholder) and not isinstance(loaded, module.HyperParameters)
    assert loaded.qualified_name == "throwaway_hparams.HyperParameters"
    # dict / list subclasses keep their items in inert containers
    assert type(hyper["attrs"]) is OrderedDict and hyper["attrs"] == {"lr": 0.5}
    assert isinstance(hyper["things"], PlaceholderList) and list(hyper["things"]) == [1, 2]
    assert sorted(p.name for p in marks.iterdir()) == []


@pytest.mark.parametrize("payload", ["CallsFunction", "CallsExec", "CallsOpen"])
def test_malicious_reduce_payload_is_not_executed(tmp_path, throwaway, payload):
    module, marks = throwaway
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": {"x": getattr(module, payload)()}}, path)
    assert list(marks.iterdir()) == []
    assert torch.equal(read_checkpoint_tensors(path)["w"], torch.ones(2))
    assert list(marks.iterdir()) == []


def test_payload_from_a_blocked_module_is_refused_not_executed(tmp_path, throwaway):
    module, marks = throwaway
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": {"x": module.CallsSystem()}}, path)
    with pytest.raises(CheckpointReadError, match=r"evil.ckpt.*system"):
        read_checkpoint_tensors(path)
    assert list(marks.iterdir()) == []
