"""Quiet, readable training output: one line per epoch, no "Writing model shards" bar per save, no
progress-bar escape codes in a log, and the encoder weights loaded named (file, format, tensors)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 3


@pytest.fixture(scope="module")
def finetune_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """stdout + stderr of a tiny fine-tune run as a script with its output captured (not a terminal)."""
    import timm

    from benthicnet_hf.ssl.export import export_encoder

    root = tmp_path_factory.mktemp("quiet")
    torch.manual_seed(0)
    weights = export_encoder(timm.create_model("test_resnet", pretrained=False, num_classes=0), root / "ssl",
                             architecture="test_resnet", image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3,
                             method="simsiam")
    cmd = [sys.executable, str(REPO / "train_scripts" / "finetune.py"), "--demo", "--data_dir", str(root / "data"),
           "--demo_num_images", "120", "--demo_image_size", "32", "--cache_dir", str(root / "cache"),
           "--output_dir", str(root / "run"), "--encoder", "test_resnet", "--encoder_checkpoint", str(root / "ssl"),
           "--image_size", "32", "--head_hidden_dim", "0", "--num_train_epochs", str(EPOCHS),
           "--per_device_train_batch_size", "32", "--warmup_epochs", "0", "--report_to", "none",
           "--checkpointing_steps", "0", "--dataloader_num_workers", "0", "--allow_degenerate_heads"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    return log, weights


def test_one_line_per_epoch_and_no_save_bars(finetune_log: tuple[str, Path]) -> None:
    log, _ = finetune_log
    assert "Writing model shards" not in log
    assert "Generating train split" not in log  # the dataset build draws no bars in a log either
    assert "\x1b[A" not in log  # no nested-bar cursor moves in a log
    epoch_lines = [line for line in log.splitlines() if re.search(r"\bepoch \d+: validation ", line)]
    assert [int(re.search(r"epoch (\d+):", line)[1]) for line in epoch_lines] == list(range(EPOCHS))
    assert all(line.startswith("epoch ") for line in epoch_lines)  # never glued to a bar or a cleared bar
    assert not re.search(r"(train|validation|test):\s+\d+%", log)  # no bar drawn off a terminal
    table = log.index("test split, best epoch")
    assert "\r" not in log[table - 200:]  # the final table is not preceded or crossed by a bar


def test_loaded_encoder_weights_are_named(finetune_log: tuple[str, Path]) -> None:
    from safetensors import safe_open

    log, weights = finetune_log
    with safe_open(str(weights), framework="pt") as handle:  # reference: the file's own tensor count
        count = len(list(handle.keys()))
    (line,) = [line for line in log.splitlines() if line.startswith("encoder weights:")]
    assert "ssl/encoder.safetensors (safetensors, timm format" in line and str(weights) not in line
    assert f": {count} tensors loaded" in line


def test_quiet_saves_silences_transformers_save_bar(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
    from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification
    from benthicnet_hf.training.run_log import quiet_saves
    from transformers.utils import logging as hf_logging

    model = BenthicNetForHierarchicalClassification(BenthicNetConfig(encoder_name="test_resnet", image_size=32,
                                                                     head_hidden_dim=0))
    hf_logging.enable_progress_bar()
    model.save_pretrained(tmp_path / "loud")
    assert "Writing model shards" in capfd.readouterr().err  # what an unsilenced save prints
    with quiet_saves():
        model.save_pretrained(tmp_path / "quiet")
    assert "Writing model shards" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # restored afterwards


def test_dataset_build_draws_no_bars_off_a_terminal(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from datasets.utils import logging as ds_logging

    from benthicnet_hf.data import build_dataset
    from benthicnet_hf.data.demo import make_demo_dataset
    from benthicnet_hf.data.export import save_parquet_shards

    table = make_demo_dataset(tmp_path / "demo", num_images=12, image_size=16, seed=0)
    ds_logging.enable_progress_bar()
    ds = build_dataset(table, cache_dir=tmp_path / "cache")
    assert sum(len(part) for part in ds.values()) == 12
    assert "Generating" not in capfd.readouterr().err  # pytest's capture is not a terminal
    assert ds_logging.is_progress_bar_enabled()  # restored for the caller
    save_parquet_shards(ds, tmp_path / "parquet")
    assert "Creating parquet" not in capfd.readouterr().err
    ds["train"].to_parquet(str(tmp_path / "plain.parquet"))  # datasets itself, outside: still draws
    assert "Creating parquet" in capfd.readouterr().err
