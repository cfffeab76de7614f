"""Transforms: eval == timm's eval transform; shapes/dtypes of with_transform rows and collate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import create_transform
from torch.utils.data import DataLoader

from benthicnet_hf import Hierarchy
from benthicnet_hf.data import build_dataset
from benthicnet_hf.data.demo import make_demo_dataset
from benthicnet_hf.data.transforms import (BENTHICNET_MEAN, BENTHICNET_STD, collate_hml, eval_transform,
                                           hml_transform, train_transform)

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
