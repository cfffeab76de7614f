"""Plots: valid PNG files, PR curve data equal to sklearn's, the card's relative links; and a demo
fine-tune that writes them, calibrates and tunes thresholds on the validation split only."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import precision_recall_curve

from benthicnet_hf.hierarchy import Hierarchy, Taxonomy
from benthicnet_hf.hub import render_model_card
from benthicnet_hf.metrics import compute_metrics, per_node_table
from benthicnet_hf.plots import PLOT_FILES, pr_curves_figure, write_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def hierarchy() -> Hierarchy:
    t = Taxonomy("t", ("r", "a", "b", "c"), ((), (0,), (0,), (1,)), sep="")
    f = Taxonomy("f", ("x", "y", "z"), ((), (), ()), kind="flat", sep="")
    return Hierarchy((t, f))


def arrays(seed: int = 0, rows: int = 80):
    hier = hierarchy()
    rng = np.random.default_rng(seed)
    y = (rng.random((rows, hier.num_nodes)) < 0.35).astype(np.uint8)
    p = np.clip(0.5 * rng.random(y.shape) + 0.4 * y, 0, 1).astype(np.float32)
    mask = (rng.random(y.shape) < 0.8).astype(np.uint8)
    return hier, p, y, mask


def test_write_plots_saves_valid_pngs_and_the_card_links_them(tmp_path: Path) -> None:
    hier, p, y, mask = arrays()
    metrics = compute_metrics(p, y, mask, hier)
    baseline = compute_metrics(np.full_like(p, 0.35), y, mask, hier)
    nodes = per_node_table(p, y, mask, hier)
    nodes["train_positives"] = [0, 3, 10, 40, 5, 100, 7]
    links = write_plots(tmp_path / "plots", hier, metrics, baseline, nodes, p ** 2, p, y, mask)
    assert sorted(Path(v).name for v in links.values()) == sorted(PLOT_FILES)
    for link in links.values():
        path = tmp_path / link
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            assert img.size[0] > 200 and img.size[1] > 200
    card = str(render_model_card(hier, metrics=metrics, baseline=baseline, plots=links))
    for link in links.values():
        assert f"]({link})" in card  # a relative image link, rendered by the Hub from the repo's files
    assert str(tmp_path) not in card
    with pytest.raises(ValueError, match="relative"):
        render_model_card(hier, metrics=metrics, plots={"x": str(tmp_path / "plots" / "pr_curves.png")})


def test_plotted_pr_curve_points_equal_sklearn_precision_recall_curve() -> None:
    hier, p, y, mask = arrays(1)
    fig = pr_curves_figure(p, y, mask, hier)
    for h, name in enumerate(hier.head_names):
        s = hier.head_slice(h)
        k = mask[:, s].astype(bool)
        precision, recall, _ = precision_recall_curve(y[:, s][k], p[:, s][k])
        (line,) = [ln for ln in fig.axes[h].lines if ln.get_label() == name]
        np.testing.assert_array_equal(line.get_xdata(), recall)
        np.testing.assert_array_equal(line.get_ydata(), precision)


@pytest.mark.slow
def test_demo_finetune_writes_plots_and_tunes_on_validation_only(tmp_path: Path, monkeypatch) -> None:
    from accelerate.state import AcceleratorState, GradientState

    from benthicnet_hf.training import calibrate, parse_args, run_finetune

    calls: list[tuple[str, np.ndarray]] = []
    real_split_logits, real_tune, real_fit = calibrate.split_logits, calibrate.tune_node_thresholds, \
        calibrate.fit_head_temperatures

    def spy_split_logits(model, loader, accelerator, desc="calibration"):
        out = real_split_logits(model, loader, accelerator, desc)
        calls.append((f"read {desc}", out[1]))
        return out

    def spy_tune(probs, targets, *args, **kwargs):
        calls.append(("tune", np.asarray(targets)))
        return real_tune(probs, targets, *args, **kwargs)

    def spy_fit(probabilities, logits, targets, *args, **kwargs):
        calls.append(("fit", np.asarray(targets)))
        return real_fit(probabilities, logits, targets, *args, **kwargs)

    monkeypatch.setattr(calibrate, "split_logits", spy_split_logits)
    monkeypatch.setattr(calibrate, "tune_node_thresholds", spy_tune)
    monkeypatch.setattr(calibrate, "fit_head_temperatures", spy_fit)
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    out = tmp_path / "run"
    result = run_finetune(parse_args([
        "--demo", "--data_dir", str(tmp_path / "data"), "--demo_num_images", "120", "--demo_image_size", "36",
        "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(out), "--encoder", "test_resnet",
        "--image_size", "32", "--head_hidden_dim", "16", "--head_dropout", "0.5", "--learning_rate", "1e-3",
        "--warmup_epochs", "1", "--num_train_epochs", "1", "--per_device_train_batch_size", "16",
        "--report_to", "none", "--checkpointing_steps", "0", "--dataloader_num_workers", "0",
        "--threshold_min_positives", "2"]))

    # fitted on the validation rows, before the test split was read at all
    names = [name for name, _ in calls]
    assert names == ["read validation (calibration)", "fit", "tune", "read test (calibration)"]
    val_targets, test_targets = calls[0][1], calls[3][1]
    assert len(val_targets) == result["eval_count"]["validation"] != len(test_targets)
    np.testing.assert_array_equal(calls[1][1], val_targets)
    np.testing.assert_array_equal(calls[2][1], val_targets)

    config = json.loads((out / "final" / "config.json").read_text())
    assert sorted(config["head_temperatures"]) == sorted(h["name"] for h in config["hierarchy"])
    assert all(t > 0 for t in config["head_temperatures"].values())
    assert len(config["node_thresholds"]) == len(config["id2label"])
    report = json.loads((out / "test_metrics.json").read_text())["calibration"]
    assert report["fitted_on"] == "validation" and report["validation_rows"] == len(val_targets)
    for split in ("validation", "test"):
        for when in ("before", "after"):
            assert 0 <= report[split][when]["overall/ece"] <= 1 and 0 <= report[split][when]["overall/brier"] <= 1
    # NLL-fitted temperatures never make the validation Brier (a proper score, like NLL) much worse
    assert report["validation"]["after"]["overall/brier"] <= report["validation"]["before"]["overall/brier"] + 1e-3

    card = (out / "final" / "README.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card)
    assert sorted(Path(link).name for link in links) == sorted(PLOT_FILES)
    for link in links:
        assert not Path(link).is_absolute()
        assert (out / "final" / link).read_bytes()[:8] == PNG_SIGNATURE
        assert (out / link).is_file()  # also in the run folder
    assert str(tmp_path) not in card and "Calibration and decision thresholds" in card
    nodes = pd.read_csv(out / "per_node_metrics.csv")
    assert "train_positives" in nodes

    # predict (the CLI's rows) decodes with the saved per-node thresholds and calibrated scores
    import torch

    from benthicnet_hf.cli import load_model, predict_images
    from benthicnet_hf.prediction import predict_paths

    model, processor = load_model(str(out / "final"), "cpu")
    files = sorted((tmp_path / "data" / "images").rglob("*.png"))[:4]
    rows = list(predict_images(model, processor, files, progress=False))
    with torch.no_grad():
        probs = model(**processor([Image.open(f).convert("RGB") for f in files], return_tensors="pt")).probabilities
    want = predict_paths(model.config.get_hierarchy(), probs, np.asarray(config["node_thresholds"]),
                         trained=model.config.trained_nodes(),
                         absence=[model.config.label2id[n] for n in model.config.absence_nodes])
    for row, pred in zip(rows, want):
        for head, p in pred.items():
            if not p["untrained"]:
                assert row[f"{head}_paths"] == "; ".join(p["paths"])
