"""The README's main job, shortened: fine-tune on the demo data → evaluate → save → reload →
pipeline → ``benthicnet-hf predict`` → push (offline: fails fast, nothing lost; mocked: uploads)."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import time
from pathlib import Path
from unittest.mock import create_autospec

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from huggingface_hub import HfApi, ModelCard
from PIL import Image

from benthicnet_hf.cli import main as cli_main
from benthicnet_hf.training import parse_args
from benthicnet_hf.training.publish import PushError, push_final

REPO = Path(__file__).resolve().parents[1]


def load_script_main():
    spec = importlib.util.spec_from_file_location("finetune_script", REPO / "train_scripts" / "finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], str]:
    """One shortened main job, asked to push while the Hub is offline."""
    root = tmp_path_factory.mktemp("job")
    argv = ["--demo", "--data_dir", str(root / "data"), "--demo_num_images", "160", "--demo_image_size", "40",
            "--cache_dir", str(root / "cache"), "--output_dir", str(root / "run"),
            "--encoder", "test_resnet", "--image_size", "32", "--head_hidden_dim", "0", "--head_dropout", "0.2",
            "--learning_rate", "1e-3", "--head_learning_rate", "3e-3", "--warmup_epochs", "0",
            "--num_train_epochs", "15", "--per_device_train_batch_size", "16",
            "--report_to", "tensorboard", "--push_to_hub", "--hub_model_id", "benthic-org/demo-model"]
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    try:
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = load_script_main()(argv)
    finally:
        mp.undo()
    return root / "run", argv, f"rc={rc}\n{err.getvalue()}"


def test_offline_push_fails_with_a_clear_message_and_keeps_the_run(job: tuple[Path, list[str], str]) -> None:
    run, _, log = job
    assert log.startswith("rc=2")
    assert "HF_HUB_OFFLINE" in log and str(run / "final") in log
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "README.md",
                 "modeling_benthicnet.py", "configuration_benthicnet.py"):
        assert (run / "final" / name).is_file(), name
    assert (run / "widget" / "model.safetensors").is_file()  # its own repository (--hub_widget_model_id)


def test_report_counts_every_sample_and_shows_the_baseline(job: tuple[Path, list[str], str]) -> None:
    run, argv, _ = job
    report = json.loads((run / "test_metrics.json").read_text())
    from benthicnet_hf.data import build_dataset
    from benthicnet_hf.data.demo import DEMO_SOURCE_EXHAUSTIVE

    data_dir = Path(argv[argv.index("--data_dir") + 1])
    splits = build_dataset(data_dir / "labels.csv", data_dir, cache_dir=argv[argv.index("--cache_dir") + 1],
                           source_exhaustive=DEMO_SOURCE_EXHAUSTIVE)
    assert report["eval_count"] == {"validation": len(splits["validation"]), "test": len(splits["test"])}
    assert set(report["baseline"]) == set(report["test"])
    text = (run / "test_metrics.txt").read_text()
    assert "label-prior baseline" in text and "hml_ap" in text
    assert any((run / "finetune").rglob("events.out.tfevents*"))  # TensorBoard tracker wrote logs


def test_model_beats_the_label_prior(job: tuple[Path, list[str], str]) -> None:
    """Prior-initialised head biases: even a short run ranks better than the label prior and is not
    worse on the thresholded micro-F1 (fresh heads at p = 0.5 were far below it).

    15 epochs: after 2 the tiny model was still at the prior (HML AP 0.584 vs 0.575 with
    torchvision's crop, 0.566 with timm's: the sign followed the augmentation's random stream);
    after 8 seeds 1, 2 were clear (0.69-0.73 vs 0.47-0.49) but seed 0 still lagged (0.561 vs 0.575,
    with the per-image keyed loader); after 15 every seed 0, 1, 2 is clear (0.71-0.75 vs 0.47-0.58)."""
    run, _, _ = job
    report = json.loads((run / "test_metrics.json").read_text())
    model, prior = report["test"], report["baseline"]
    assert model["overall/hml_ap"] > prior["overall/hml_ap"]
    assert model["overall/ap_micro"] > prior["overall/ap_micro"]
    assert model["overall/f1_micro"] >= prior["overall/f1_micro"] - 1e-9


def test_reload_pipeline_and_cli_agree(job: tuple[Path, list[str], str], tmp_path: Path) -> None:
    run, argv, _ = job
    from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

    final = run / "final"
    model = AutoModelForImageClassification.from_pretrained(final).eval()
    processor = AutoImageProcessor.from_pretrained(final)
    data_dir = Path(argv[argv.index("--data_dir") + 1])
    files = sorted((data_dir / "images").rglob("*.png"))[:3]
    images = [Image.open(f).convert("RGB") for f in files]
    with torch.no_grad():
        probs = model(**processor(images, return_tensors="pt")).probabilities
    pipe = pipeline("image-classification", model=str(final), trust_remote_code=True)
    n = model.config.num_labels
    trained = model.config.trained_nodes()  # the training split's support, stored by fine-tuning
    assert trained is not None and 0 < sum(trained) < n
    for image, p in zip(images, probs):
        scores = {d["label"]: d["score"] for d in pipe(image, top_k=n)}
        expected = {model.config.id2label[i]: float(p[i]) for i in range(n) if trained[i]}
        assert scores.keys() == expected.keys()
        assert max(abs(scores[k] - expected[k]) for k in scores) < 1e-5
    card = ModelCard.load(final / "README.md")
    assert card.data.pipeline_tag == "image-classification"

    out = tmp_path / "predictions.csv"
    assert cli_main(["predict", "--model", str(final), *map(str, files), "--output", str(out), "--no_progress"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["image"] for r in rows] == [str(f) for f in files]
    for row, p in zip(rows, probs):
        if row["substrate_deepest"]:
            i = model.config.label2id[f"substrate: {row['substrate_deepest']}"]
            assert float(row["substrate_score"]) == pytest.approx(float(p[i]), abs=1e-5)


def test_mocked_push_uploads_the_final_folder(job: tuple[Path, list[str], str]) -> None:
    run, argv, _ = job
    before = tree_digest(run / "final")
    api = create_autospec(HfApi, instance=True)
    api.upload_folder.return_value = "https://huggingface.co/benthic-org/demo-model/commit/abc"
    url = push_final(run, parse_args(argv), api=api)
    assert "benthic-org/demo-model" in url
    assert api.create_repo.call_args.args[0] == "benthic-org/demo-model"
    kwargs = api.upload_folder.call_args.kwargs
    assert Path(kwargs["folder_path"]) == run / "final" and kwargs["repo_id"] == "benthic-org/demo-model"
    assert tree_digest(run / "final") == before

    failing = create_autospec(HfApi, instance=True)
    failing.create_repo.side_effect = ConnectionError("network down")
    start = time.monotonic()
    with pytest.raises(PushError, match="network down") as info:
        push_final(run, parse_args(argv), api=failing)
    assert time.monotonic() - start < 5 and str(run / "final") in str(info.value)
    assert tree_digest(run / "final") == before


def test_per_node_metrics_csv_counts_match_the_label_matrices(job: tuple[Path, list[str], str]) -> None:
    import pandas as pd

    from benthicnet_hf.data import build_dataset
    from benthicnet_hf.data.demo import DEMO_SOURCE_EXHAUSTIVE
    from benthicnet_hf.data.label_matrices import label_matrices

    run, argv, _ = job
    table = pd.read_csv(run / "per_node_metrics.csv", keep_default_na=False, na_values=[""])
    assert list(table.columns[:7]) == ["head", "node", "depth", "train_positives", "train_negatives",
                                       "positives", "negatives"]
    model_cfg = json.loads((run / "final" / "config.json").read_text())
    data_dir = Path(argv[argv.index("--data_dir") + 1])
    splits = build_dataset(data_dir / "labels.csv", data_dir, cache_dir=argv[argv.index("--cache_dir") + 1],
                           source_exhaustive=DEMO_SOURCE_EXHAUSTIVE)
    from benthicnet_hf import Hierarchy

    hierarchy = Hierarchy.from_list(model_cfg["hierarchy"])
    for split, (pos_col, neg_col) in {"train": ("train_positives", "train_negatives"),
                                      "test": ("positives", "negatives")}.items():
        y, m = label_matrices(splits[split], hierarchy)
        assert table[pos_col].tolist() == ((y == 1) & (m == 1)).sum(0).tolist()
        assert table[neg_col].tolist() == ((y == 0) & (m == 1)).sum(0).tolist()
    assert table["train_positives"].tolist() == model_cfg["node_support"]["positives"]
    # a node without both test classes has no AP; the others have one in [0, 1]
    both = (table["positives"] > 0) & (table["negatives"] > 0)
    assert table.loc[~both, "ap"].isna().all() and table.loc[both, "ap"].between(0, 1).all()
