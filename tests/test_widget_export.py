"""Flat timm export for the Hub widget: raw logits identical to the full model's, no remote code."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from transformers import AutoModelForImageClassification, pipeline

from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
from benthicnet_hf.hierarchy import Taxonomy, Hierarchy
from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification
from benthicnet_hf.widget_export import WidgetExportError, export_for_widget

HIER = Hierarchy((Taxonomy.from_paths("zeta", ["A", "A > B", "A > C", "D"]), Taxonomy.flat("alpha", ["red", "blue", "green"])))


def trained_like(encoder: str, kwargs: dict, hidden: int = 0) -> BenthicNetForHierarchicalClassification:
    torch.manual_seed(0)
    config = BenthicNetConfig(encoder_name=encoder, encoder_kwargs=kwargs, hierarchy=HIER.to_list(),
                              head_hidden_dim=hidden, image_size=32)
    model = BenthicNetForHierarchicalClassification(config)
    model.train()
    with torch.no_grad():  # a few train-mode batches give every BatchNorm non-trivial statistics
        for _ in range(3):
            model(torch.randn(8, 3, 32, 32) * 2 + 0.5)
    return model.eval()


@pytest.mark.parametrize("encoder, kwargs", [("test_resnet", {}), ("test_vit", {"img_size": 32})])
def test_export_gives_identical_raw_logits(tmp_path, encoder, kwargs):
    model = trained_like(encoder, kwargs)
    export_for_widget(model, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["architecture"] == encoder and cfg["num_classes"] == HIER.num_nodes
    assert cfg["label_names"] == HIER.labels
    assert cfg["model_args"] == kwargs and "num_classes" not in cfg["model_args"]
    assert "unconstrained" in (tmp_path / "README.md").read_text().lower()
    pre = cfg["pretrained_cfg"]  # timm's layout: the model's eval preprocessing travels with the weights
    assert pre["input_size"] == [3, 32, 32] and pre["crop_pct"] == model.config.crop_pct
    assert pre["mean"] == list(model.config.image_mean) and pre["num_classes"] == HIER.num_nodes

    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref = model(x).logits
        plain = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
        torch.testing.assert_close(plain(x), ref, atol=1e-5, rtol=1e-5)
        wrapper = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
        assert type(wrapper).__name__ == "TimmWrapperForImageClassification"
        torch.testing.assert_close(wrapper(x).logits, ref, atol=1e-5, rtol=1e-5)


def test_plain_pipeline_serves_raw_sigmoid_scores(tmp_path):
    model = trained_like("test_resnet", {})
    export_for_widget(model, tmp_path)
    img = Image.fromarray((np.random.default_rng(0).random((50, 40, 3)) * 255).astype(np.uint8))
    pipe = pipeline("image-classification", model=str(tmp_path), top_k=HIER.num_nodes)  # no remote code
    result = pipe(img)
    assert sorted(r["label"] for r in result) == sorted(HIER.labels)
    pv = pipe.image_processor(img, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = torch.sigmoid(model(pv).logits)[0].numpy()  # per-node sigmoid, no max-constraint
    got = {r["label"]: r["score"] for r in result}
    np.testing.assert_allclose([got[k] for k in HIER.labels], expected, atol=1e-5)


def test_mlp_heads_are_refused_with_the_reason(tmp_path):
    model = trained_like("test_resnet", {}, hidden=8)
    with pytest.raises(WidgetExportError, match="head_hidden_dim=0"):
        export_for_widget(model, tmp_path)


def test_card_must_say_unconstrained(tmp_path):
    model = trained_like("test_resnet", {})
    with pytest.raises(ValueError, match="unconstrained"):
        export_for_widget(model, tmp_path, card_text="# A model\n")
