"""Model card rendering (round trip through ModelCard parsing) and Hub pushes (mocked, offline)."""

from __future__ import annotations

import time
from unittest import mock

import pytest
import yaml
from huggingface_hub import HfApi, ModelCard

from benthicnet_hf import Hierarchy
from benthicnet_hf.hub import HubOfflineError, push_folder_to_hub, render_encoder_card, render_model_card

METRICS = {"overall/ap_micro": 0.8123, "overall/ap_macro": 0.61, "overall/hml_ap": 0.7,
           "overall/f1_micro": 0.55, "biota/ap_micro": 0.5, "overall/ap_micro_thresholded": float("nan")}


def test_model_card_round_trip_keeps_metadata_and_eval_results():
    h = Hierarchy.catami()
    card = render_model_card(h, metrics=METRICS, training_args={"learning_rate": 3e-5, "epochs": 10},
                             base_model="timm/resnet50.a1_in1k", datasets="org/benthicnet", model_id="org/hml")
    text = str(card)
    parsed = ModelCard(text)  # parses the YAML header and model-index back
    header = yaml.safe_load(text.split("---")[1])
    assert header["pipeline_tag"] == "image-classification"
    assert header["library_name"] == "transformers"
    assert header["base_model"] == "timm/resnet50.a1_in1k"
    assert header["datasets"] == ["org/benthicnet"]
    assert "model-index" in header and header["model-index"][0]["name"] == "org/hml"
    got = {r.metric_type: r.metric_value for r in parsed.data.eval_results}
    assert got == {"ap_micro": 0.8123, "ap_macro": 0.61, "hml_ap": 0.7, "f1_micro": 0.55}  # NaN left out
    assert "| biota | tree | 272 | 7 |" in text and "324 nodes" in text
    assert "learning_rate" in text and "trust_remote_code=True" in text
    assert "Missing information" in text and "remote code" in text.lower()


def test_widget_export_card_says_scores_are_raw_sigmoids():
    card = render_model_card(Hierarchy.catami(), widget_export=True, model_id="org/hml-widget")
    assert card.data.library_name == "timm"
    assert "unconstrained raw per-node sigmoids" in card.text
    assert ModelCard(str(card)).data.pipeline_tag == "image-classification"


def test_encoder_card_lists_method_backbone_and_settings():
    card = render_encoder_card(method="BarlowTwins", backbone="resnet50",
                               settings={"epochs": 400, "optimizer": "LARS"}, model_id="org/bt-rn50")
    text = str(card)
    assert "| method | `BarlowTwins` |" in text and "| epochs | `400` |" in text
    assert ModelCard(text).data.tags[0] == "self-supervised"


def test_push_uses_create_repo_and_upload_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    api = mock.create_autospec(HfApi, instance=True)
    api.upload_folder.return_value = mock.Mock(commit_url="https://hf.co/org/m/commit/abc")
    url = push_folder_to_hub(tmp_path, "org/m", api=api, private=True, commit_message="msg")
    assert url == "https://hf.co/org/m/commit/abc"
    api.create_repo.assert_called_once()
    assert api.create_repo.call_args.args[0] == "org/m"
    assert api.create_repo.call_args.kwargs["exist_ok"] is True
    assert api.create_repo.call_args.kwargs["private"] is True
    kwargs = api.upload_folder.call_args.kwargs
    assert kwargs["folder_path"] == str(tmp_path) and kwargs["repo_id"] == "org/m"
    assert kwargs["commit_message"] == "msg"


def test_offline_push_fails_fast_and_keeps_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    start = time.monotonic()
    with pytest.raises(HubOfflineError, match="HF_HUB_OFFLINE"):
        push_folder_to_hub(tmp_path, "org/m")
    assert time.monotonic() - start < 2
    assert (tmp_path / "model.safetensors").read_bytes() == b"weights"


def test_push_rejects_bad_input(tmp_path):
    api = mock.create_autospec(HfApi, instance=True)
    with pytest.raises(FileNotFoundError, match="empty"):
        push_folder_to_hub(tmp_path, "org/m", api=api)
    (tmp_path / "x").write_text("x")
    with pytest.raises(ValueError, match="org/name"):
        push_folder_to_hub(tmp_path, "noslash", api=api)
    api.create_repo.assert_not_called()


def test_model_card_shows_prior_baseline_and_names_non_evaluable_heads():
    metrics = {"overall/ap_micro": 0.8123, "biota/ap_micro": float("nan"), "biota/not_evaluable": 1.0,
               "substrate/ap_micro": 0.9, "substrate/not_evaluable": 0.0}
    baseline = {"overall/ap_micro": 0.4321, "substrate/ap_micro": 0.5}
    text = render_model_card(Hierarchy.catami(), metrics=metrics, baseline=baseline).text
    assert "0.8123 (0.4321)" in text and "label-prior baseline" in text
    assert "Not evaluable on this split" in text and ": biota." in text and "substrate." not in text
