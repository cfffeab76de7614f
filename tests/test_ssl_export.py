"""The encoder export and its timm Hub folder (written by timm's ``save_for_hf``) load back into timm."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors.torch import load_file

from benthicnet_hf.configuration_benthicnet import BENTHICNET_MEAN, BENTHICNET_STD
from benthicnet_hf.ssl.export import ENCODER_CONFIG, ENCODER_WEIGHTS, export_encoder, write_timm_hub_folder


@pytest.mark.parametrize("arch, kwargs", [("test_resnet", {}), ("test_vit", {"img_size": 32})])
def test_timm_hub_folder_loads_back_with_the_pretraining_preprocessing(tmp_path, arch, kwargs):
    torch.manual_seed(0)
    encoder = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs).eval()
    export_encoder(encoder, tmp_path / "run", architecture=arch, image_size=32, mean=BENTHICNET_MEAN,
                   std=BENTHICNET_STD, method="simsiam")
    folder = write_timm_hub_folder(tmp_path / "run", tmp_path / "hub")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", ENCODER_CONFIG, "model.safetensors"]
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architecture"] == arch and cfg["num_classes"] == 0
    pre = cfg["pretrained_cfg"]
    assert pre["input_size"] == [3, 32, 32] and pre["crop_pct"] == 1.0
    assert pre["mean"] == pytest.approx(BENTHICNET_MEAN) and pre["std"] == pytest.approx(BENTHICNET_STD)
    assert pre["tag"] == "benthicnet_simsiam"
    exported = load_file(tmp_path / "run" / ENCODER_WEIGHTS)
    assert load_file(folder / "model.safetensors").keys() == exported.keys()

    loaded = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert loaded.num_classes == 0
    data = timm.data.resolve_model_data_config(loaded)
    assert data["mean"] == pytest.approx(BENTHICNET_MEAN) and data["input_size"] == (3, 32, 32)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), encoder(x))
