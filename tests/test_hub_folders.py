"""Hub folders as the Hub reads them: the widget export is a repository of its own (its root is what
the widget serves), its card's metrics are computed from its own raw outputs, ``base_model`` comes
from the encoder checkpoint's provenance, and no card names a local path. Pushes use a mocked
``HfApi`` (no network)."""

from __future__ import annotations

import re
from pathlib import Path
from unittest.mock import create_autospec

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from sklearn.metrics import average_precision_score

from benthicnet_hf.training import parse_args, run_finetune

REPO = Path(__file__).resolve().parents[1]

MODEL_ID, WIDGET_ID = "benthic-org/demo-model", "benthic-org/demo-model-widget"
ENCODER_REPO = "benthic-org/ssl-test-resnet"  # the repo the encoder checkpoint was "downloaded" from


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], Path]:
    """A one-epoch fine-tune (linear heads) from an encoder checkpoint inside a Hugging Face cache."""
    import timm
    from accelerate.state import AcceleratorState, GradientState

    from benthicnet_hf.ssl.export import export_encoder

    root = tmp_path_factory.mktemp("hubrun")
    snapshot = root / "hf_cache" / f"models--{ENCODER_REPO.replace('/', '--')}" / "snapshots" / "0123abcd"
    torch.manual_seed(0)
    export_encoder(timm.create_model("test_resnet", pretrained=False, num_classes=0), snapshot,
                   architecture="test_resnet", image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                   method="simsiam")
    out = root / "run"
    argv = ["--demo", "--data_dir", str(root / "data"), "--demo_num_images", "120", "--demo_image_size", "40",
            "--cache_dir", str(root / "cache"), "--output_dir", str(out), "--encoder", "test_resnet",
            "--encoder_checkpoint", str(snapshot), "--image_size", "32", "--head_hidden_dim", "0",
            "--num_train_epochs", "2", "--per_device_train_batch_size", "32", "--learning_rate", "1e-2",
            "--warmup_epochs", "0", "--report_to", "none", "--checkpointing_steps", "0",
            "--dataloader_num_workers", "0", "--hub_model_id", MODEL_ID, "--hub_widget_model_id", WIDGET_ID]
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    run_finetune(parse_args(argv))
    return out, argv, root


def test_widget_is_its_own_repository(run: tuple[Path, list[str], Path]) -> None:
    from benthicnet_hf.training.publish import push_final

    out, argv, _ = run
    assert not (out / "final" / "widget").exists()  # a subfolder the widget never reads
    assert {p.name for p in (out / "widget").iterdir()} == {"config.json", "model.safetensors", "README.md"}
    api = create_autospec(HfApi, instance=True)
    api.upload_folder.return_value = f"https://huggingface.co/{MODEL_ID}/commit/abc"
    push_final(out, parse_args(argv), api=api)
    assert [c.args[0] for c in api.create_repo.call_args_list] == [MODEL_ID, WIDGET_ID]
    uploads = [(Path(c.kwargs["folder_path"]), c.kwargs["repo_id"]) for c in api.upload_folder.call_args_list]
    assert uploads == [(out / "final", MODEL_ID), (out / "widget", WIDGET_ID)]
    assert all(c.kwargs["repo_type"] == "model" for c in api.upload_folder.call_args_list)


def test_widget_repo_needs_a_widget_export(run: tuple[Path, list[str], Path], tmp_path: Path) -> None:
    import shutil

    from benthicnet_hf.training.publish import PushError, push_final

    out, argv, _ = run
    copy = tmp_path / "run"
    shutil.copytree(out / "final", copy / "final")  # no widget/ (e.g. MLP heads)
    with pytest.raises(PushError, match="no widget export"):
        push_final(copy, parse_args(argv), api=create_autospec(HfApi, instance=True))
    with pytest.raises(ValueError, match="hub_widget_model_id"):
        parse_args([*argv, "--hub_widget_model_id", MODEL_ID])  # the same repo twice


def _card_table(card: ModelCard, metric: str) -> dict[str, float]:
    """``{scope: value}`` of one row of the card's metric table (value before the baseline's brackets)."""
    lines = card.text.splitlines()
    header = next(line for line in lines if line.startswith("metric "))
    scopes = header.split()[1:]
    row = next(line for line in lines if line.split() and line.split()[0] == metric)
    values = re.findall(r"(-?\d+\.\d+|nan) \(", row)
    return dict(zip(scopes, map(float, values)))


def test_widget_card_metrics_are_the_widgets_own(run: tuple[Path, list[str], Path]) -> None:
    """Reference: the exported folder loaded by timm alone, run with timm's own preprocessing on the
    test split, scored with sklearn's average precision over the known bits."""
    import json

    import timm
    from timm.data import create_transform, resolve_data_config

    from benthicnet_hf.data import build_dataset
    from benthicnet_hf.data.demo import DEMO_SOURCE_EXHAUSTIVE
    from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
    from benthicnet_hf.data.label_matrices import label_matrices

    out, argv, root = run
    widget = timm.create_model(f"local-dir:{out / 'widget'}", pretrained=True).eval()
    transform = create_transform(**resolve_data_config({}, model=widget))
    test = build_dataset(root / "data" / "labels.csv", root / "data", cache_dir=str(root / "cache"),
                         source_exhaustive=DEMO_SOURCE_EXHAUSTIVE)["test"]
    hierarchy = BenthicNetConfig.from_pretrained(out / "final").get_hierarchy()
    targets, mask = label_matrices(test, hierarchy)
    pixels = torch.stack([transform(image.convert("RGB")) for image in test["image"]])
    with torch.no_grad():
        scores = torch.sigmoid(widget(pixels)).numpy()
    known = mask.astype(bool)

    card = ModelCard.load(out / "widget" / "README.md")
    (result,) = [r for r in card.data.eval_results if r.metric_type == "ap_micro"]
    pooled = average_precision_score(targets[known], scores[known])
    assert result.metric_value == pytest.approx(pooled, abs=2e-4)
    table = _card_table(card, "ap_micro")
    full = json.loads((out / "test_metrics.json").read_text())["test"]
    differs = 0
    for head in hierarchy.head_names:
        s = hierarchy.head_slice(head)
        k = known[:, s]
        own = average_precision_score(targets[:, s][k], scores[:, s][k])
        assert table[head] == pytest.approx(own, abs=2e-4), head
        differs += abs(full[f"{head}/ap_micro"] - own) > 1e-3
    assert differs  # the full model's coherent scores give other figures: the card does not repeat them


def test_cards_name_the_encoder_repo_and_no_local_path(run: tuple[Path, list[str], Path]) -> None:
    out, _, root = run
    for folder in ("final", "widget"):
        card = ModelCard.load(out / folder / "README.md")
        assert card.data.base_model == ENCODER_REPO
        text = (out / folder / "README.md").read_text()
        assert str(root) not in text and str(Path.home()) not in text
        assert not re.search(r"(?<![\w.~:/])/(?:tmp|home|work|root|Users|var|private)/", text), folder
        assert ENCODER_REPO in text  # the checkpoint setting is shown as its Hub id


def test_checkpoint_hub_id() -> None:
    from benthicnet_hf.training.publish import card_value, checkpoint_hub_id

    cache = "/x/.cache/huggingface/hub/models--org-a--enc.v2/snapshots/ab12/encoder.safetensors"
    assert checkpoint_hub_id(cache) == "org-a/enc.v2"
    assert checkpoint_hub_id("/data/runs/ssl") is None and checkpoint_hub_id(None) is None
    assert card_value("encoder_checkpoint", "/data/runs/ssl/encoder.safetensors") == "local encoder.safetensors"
    assert card_value("learning_rate", 0.1) == 0.1


def test_dataset_card_is_written_with_the_local_dataset(run: tuple[Path, list[str], Path], tmp_path: Path) -> None:
    """Reference: ``datasets.load_dataset`` on the folder reads the card's ``configs`` to find the splits."""
    import importlib.util

    import datasets
    from huggingface_hub import DatasetCard

    _, _, root = run
    spec = importlib.util.spec_from_file_location("build_dataset", REPO / "dataset_scripts" / "build_dataset.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    pq, disk = tmp_path / "benthic-demo", tmp_path / "disk"
    script.main([str(root / "data" / "labels.csv"), "--cache-dir", str(root / "cache"), "--parquet-dir", str(pq),
                 "--save-to-disk", str(disk), "--source-exhaustive", '{"demo_survey_b": {"biota": false}}'])
    for folder in (pq, disk):
        card = DatasetCard.load(folder / "README.md")
        assert card.data.task_categories == ["image-classification"]
        assert str(tmp_path) not in (folder / "README.md").read_text()
    loaded = datasets.load_dataset(str(pq), cache_dir=str(tmp_path / "hf_cache"))
    saved = datasets.load_from_disk(str(disk))
    assert {s: len(d) for s, d in loaded.items()} == {s: len(d) for s, d in saved.items()}
    assert set(loaded) == {"train", "validation", "test"}


def test_widget_logits_follow_the_head_temperatures() -> None:
    """Reference: the full model's own raw logits (which divide by the temperatures) on the same pixels."""
    from benthicnet_hf import Hierarchy
    from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
    from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification
    from benthicnet_hf.widget_export import build_timm_classifier

    hierarchy = Hierarchy.catami().subset(["substrate", "relief"])
    torch.manual_seed(0)
    config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=hierarchy.to_list(), head_hidden_dim=0,
                              image_size=32, head_temperatures={"substrate": 2.5, "relief": 0.5})
    model = BenthicNetForHierarchicalClassification(config).eval()
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = model(pixel_values=pixels).logits
        got = build_timm_classifier(model)(pixels)
    assert torch.allclose(got, want, atol=1e-4)
    model.config.head_temperatures = None
    with torch.no_grad():
        assert not torch.allclose(build_timm_classifier(model)(pixels), want, atol=1e-2)
