"""The saved image processor reproduces timm's eval transform at every size and aspect ratio, and a
model with image_size >= 384 saves and reloads (it used to fail inside ``save_pretrained``)."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from transformers import AutoImageProcessor

from benthicnet_hf import BenthicNetConfig, BenthicNetForHierarchicalClassification, Hierarchy
from benthicnet_hf.image_processing import BenthicNetImageProcessor, make_image_processor

# odd and even margins after the resize: the crop position must round as torchvision's does
SHAPES = [(425, 313), (313, 425), (480, 640), (999, 1001), (226, 560)]


@pytest.mark.parametrize("size", [48, 224, 384, 448])
def test_processor_equals_timm_eval_transform(size: int) -> None:
    config = BenthicNetConfig(encoder_name="test_resnet", image_size=size)
    proc = make_image_processor(config)
    tf = timm.data.create_transform(input_size=(3, size, size), interpolation="bicubic", crop_pct=config.crop_pct,
                                    crop_mode="center", mean=config.image_mean, std=config.image_std)
    rng = np.random.default_rng(size)
    for h, w in SHAPES:
        img = Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))
        ours = proc(img, return_tensors="pt")["pixel_values"][0]
        ref = tf(img)
        assert ours.shape == ref.shape == (3, size, size)
        # tensor vs PIL bicubic: at most ~2 grey levels apart (/ std ~0.21), never a shifted crop
        torch.testing.assert_close(ours, ref, atol=4e-2, rtol=0)
        assert (ours - ref).abs().mean() < 3e-4


def test_large_image_size_saves_and_reloads(tmp_path) -> None:
    hierarchy = Hierarchy.catami().subset(["relief"])
    model = BenthicNetForHierarchicalClassification(BenthicNetConfig(
        encoder_name="test_resnet", hierarchy=hierarchy.to_list(), image_size=384, head_hidden_dim=0))
    model.save_pretrained(tmp_path)
    proc = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(proc, BenthicNetImageProcessor)
    img = Image.fromarray(np.zeros((500, 700, 3), dtype=np.uint8))
    assert proc(img, return_tensors="pt")["pixel_values"].shape == (1, 3, 384, 384)
