"""Transforms: eval == timm's eval transform == the model's processor; train semantics (crop scale,
both flips, jitter, BenthicNet mean/std by default); shapes/dtypes of with_transform rows and collate."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform
from timm.data.transforms import RandomResizedCropAndInterpolation
from torch.utils.data import DataLoader
from torchvision import transforms as T

from benthicnet_hf import BenthicNetConfig, Hierarchy
from benthicnet_hf.data import build_dataset
from benthicnet_hf.data.demo import make_demo_dataset
from benthicnet_hf.data.transforms import (BENTHIC_CROP_SCALE, BENTHICNET_MEAN, BENTHICNET_STD, collate_hml,
                                           data_config, eval_transform, hml_transform, train_transform,
                                           transforms_for)
from benthicnet_hf.image_processing import make_image_processor

CATAMI = Hierarchy.catami()


@pytest.mark.parametrize("size,crop_pct", [(64, 0.875), (96, 0.9)])
def test_eval_transform_equals_timm(size, crop_pct):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (150, 110, 3), dtype=np.uint8))
    ref = create_transform(input_size=(3, size, size), is_training=False, mean=BENTHICNET_MEAN,
                           std=BENTHICNET_STD, crop_pct=crop_pct, interpolation="bicubic")
    ours = eval_transform(size, BENTHICNET_MEAN, BENTHICNET_STD, crop_pct=crop_pct)
    torch.testing.assert_close(ours(img), ref(img), atol=1e-6, rtol=0)


def test_train_transform_shape_and_randomness():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (80, 120, 3), dtype=np.uint8))
    tf = train_transform(48, BENTHICNET_MEAN, BENTHICNET_STD)
    a, b = tf(img), tf(img)
    assert a.shape == (3, 48, 48) and a.dtype == torch.float32
    assert not torch.equal(a, b)


def test_defaults_are_the_models_benthicnet_statistics():
    # ImageNet's mean/std on a BenthicNet model shift every input (it changed a user's AP)
    config = BenthicNetConfig(encoder_name="test_resnet")
    assert tuple(config.image_mean) == BENTHICNET_MEAN and tuple(config.image_std) == BENTHICNET_STD
    for tf in (train_transform(32), eval_transform(32)):
        norm = tf.transforms[-1]
        assert isinstance(norm, T.Normalize)
        assert norm.mean.tolist() == pytest.approx(BENTHICNET_MEAN) and norm.std.tolist() == pytest.approx(BENTHICNET_STD)
    # identity geometry (full-frame crop of a square image at its own size, no jitter): pure normalisation
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    tf = train_transform(40, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, vflip=0.0, color_jitter=0.0)
    expected = (torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
                - torch.tensor(BENTHICNET_MEAN)[:, None, None]) / torch.tensor(BENTHICNET_STD)[:, None, None]
    torch.testing.assert_close(tf(img), expected, atol=1e-6, rtol=0)


def test_train_transform_semantics():
    tf = train_transform(48)
    crop = tf.transforms[0]
    assert isinstance(crop, RandomResizedCropAndInterpolation)
    assert crop.scale == BENTHIC_CROP_SCALE and crop.ratio == pytest.approx((3 / 4, 4 / 3))
    flips = {type(t): t.p for t in tf.transforms if isinstance(t, (T.RandomHorizontalFlip, T.RandomVerticalFlip))}
    assert flips == {T.RandomHorizontalFlip: 0.5, T.RandomVerticalFlip: 0.5}
    jitter = [t for t in tf.transforms if isinstance(t, T.ColorJitter)]
    assert len(jitter) == 1 and jitter[0].brightness == jitter[0].contrast == jitter[0].saturation == (0.6, 1.4)
    assert jitter[0].hue is None
    assert not any(isinstance(t, T.ColorJitter) for t in train_transform(48, color_jitter=0.0).transforms)
    # nadir imagery has no "up": all four flip combinations occur
    img = Image.fromarray(np.random.default_rng(3).integers(0, 256, (24, 24, 3), dtype=np.uint8))
    geo = train_transform(24, scale=(1.0, 1.0), ratio=(1.0, 1.0), color_jitter=0.0)
    base = eval_transform(24, crop_pct=1.0)(img)
    variants = {"id": base, "h": base.flip(-1), "v": base.flip(-2), "hv": base.flip(-1).flip(-2)}
    torch.manual_seed(0)
    seen = set()
    for _ in range(40):
        out = geo(img)
        seen |= {k for k, v in variants.items() if torch.allclose(out, v, atol=1e-6)}
    assert seen == set(variants)


ODD_SHAPES = [(101, 77), (77, 101), (255, 333), (64, 97)]


def test_transforms_for_config_matches_the_models_processor():
    config = BenthicNetConfig(encoder_name="test_resnet", image_size=56, crop_pct=0.9)
    cfg = data_config(config)
    assert cfg["input_size"] == (3, 56, 56) and cfg["crop_pct"] == 0.9 and cfg["interpolation"] == "bicubic"
    assert cfg["mean"] == BENTHICNET_MEAN and cfg["std"] == BENTHICNET_STD
    _, eval_tf = transforms_for(config)
    proc = make_image_processor(config)
    rng = np.random.default_rng(4)
    for h, w in ODD_SHAPES:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        ours, ref = eval_tf(img), proc(img, return_tensors="pt")["pixel_values"][0]
        assert ours.shape == ref.shape == (3, 56, 56)
        # not exact: timm resizes the PIL image (uint8 bicubic), the processor a float tensor, so pixels
        # differ by at most ~2 grey levels (/ std ~0.21); a shifted crop would give errors ~1
        torch.testing.assert_close(ours, ref, atol=4e-2, rtol=0)
        assert (ours - ref).abs().mean() < 1e-3


def test_data_config_of_a_timm_model_is_its_pretrained_cfg():
    model = timm.create_model("test_resnet", pretrained=False)
    cfg = data_config(model)
    assert cfg["mean"] == tuple(model.pretrained_cfg["mean"]) and cfg["input_size"][1:] == (160, 160)
    with pytest.raises(TypeError, match="pretrained_cfg"):
        data_config(object())


def test_with_transform_and_collate(tmp_path):
    table = make_demo_dataset(tmp_path / "demo", num_images=40, image_size=40, seed=0)
    ds = build_dataset(table, cache_dir=tmp_path / "c", split_fractions={"train": 1.0})["train"]
    view = ds.with_transform(hml_transform(CATAMI, eval_transform(32, crop_pct=1.0), keep_columns=("site",)))
    row = view[0]
    n = CATAMI.num_nodes
    assert row["pixel_values"].shape == (3, 32, 32) and row["pixel_values"].dtype == torch.float32
    assert row["labels"].shape == (n,) and row["labels"].dtype == torch.float32
    assert row["label_mask"].shape == (n,) and row["label_mask"].dtype == torch.float32
    # independent check of the layout: every labelled substrate key is set at its global index
    raw = ds[0]
    for label in raw["substrate_labels"]:
        assert row["labels"][CATAMI.index("substrate", label)] == 1
        assert row["label_mask"][CATAMI.index("substrate", label)] == 1
    assert int(row["labels"].sum()) == sum(sum(raw[f"{h}_target"]) for h in CATAMI.head_names)
    loader = DataLoader(view, batch_size=8, collate_fn=collate_hml, shuffle=False)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (8, 3, 32, 32)
    assert batch["labels"].shape == (8, n) and batch["label_mask"].shape == (8, n)
    assert batch["site"] == ds["site"][:8]
    torch.testing.assert_close(batch["labels"][0], row["labels"])
