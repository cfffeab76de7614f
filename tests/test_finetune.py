"""Fine-tuning loop: reference defaults, crash-safe checkpoints, exact resume, 1 vs 2 processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from safetensors.torch import load_file

from benthicnet_hf.training import FinetuneArguments, find_checkpoint, list_checkpoints, parse_args, run_finetune
from benthicnet_hf.training.checkpointing import save_checkpoint

REPO = Path(__file__).resolve().parents[1]
TINY = ["--encoder", "test_resnet", "--image_size", "32", "--head_hidden_dim", "16", "--head_dropout", "0.5",
        "--learning_rate", "1e-3", "--warmup_epochs", "1", "--report_to", "none", "--checkpointing_steps", "0"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Data flags for a small demo set (160 images: 133 train, 18 validation, 9 test rows)."""
    root = tmp_path_factory.mktemp("demo")
    return ["--demo", "--data_dir", str(root / "data"), "--demo_num_images", "160", "--demo_image_size", "40",
            "--cache_dir", str(root / "cache")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_run(argv: list[str]) -> dict:
    """One run in this process, as if it were a new one (accelerate keeps global state)."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return run_finetune(parse_args(argv))


def test_defaults_are_the_reference_recipe() -> None:
    args = FinetuneArguments(output_dir="x", demo=True)
    assert (args.learning_rate, args.weight_decay, args.warmup_epochs) == (3e-5, 1e-5, 10.0)
    assert (args.per_device_train_batch_size, args.num_train_epochs) == (128, 100)
    assert (args.head_hidden_dim, args.head_dropout) == (2048, 0.7)
    parsed = parse_args(["--output_dir", "o", "--table", "t.csv", "--linear_probe", "--gradient_accumulation_steps", "4"])
    assert parsed.linear_probe and parsed.gradient_accumulation_steps == 4 and parsed.table == "t.csv"
    with pytest.raises(ValueError, match="exactly one data source"):
        FinetuneArguments(output_dir="x", demo=True, table="t.csv")
    with pytest.raises(ValueError, match="--hub_model_id"):
        FinetuneArguments(output_dir="x", demo=True, push_to_hub=True)


def test_kill_during_save_keeps_previous_checkpoint(tmp_path: Path) -> None:
    AcceleratorState._reset_state(True)
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(3, 2))
    first = save_checkpoint(accelerator, tmp_path, step=1)
    saved = load_file(str(first / "model.safetensors"))
    with torch.no_grad():
        model.weight.add_(1.0)

    real_save = accelerator.save_state

    def killed_mid_save(output_dir: str, **kwargs: object) -> None:
        Path(output_dir).mkdir(parents=True)
        (Path(output_dir) / "model.safetensors").write_bytes(b"half a file")
        raise KeyboardInterrupt  # the process dies here

    accelerator.save_state = killed_mid_save
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(accelerator, tmp_path, step=2)
    assert find_checkpoint(tmp_path, "latest") == first
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000001"]
    accelerator.load_state(str(find_checkpoint(tmp_path, "latest")))
    torch.testing.assert_close(accelerator.unwrap_model(model).weight, saved["weight"], rtol=0, atol=0)

    accelerator.save_state = real_save
    save_checkpoint(accelerator, tmp_path, step=3, save_total_limit=1)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_00000003"]  # temp left-overs cleaned
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        find_checkpoint(tmp_path, str(tmp_path / "nope"))


def test_interrupted_and_resumed_run_ends_with_the_same_weights(demo: list[str], tmp_path: Path) -> None:
    # 133 training rows, batch 48: 3 steps per epoch; the interruption falls inside epoch 1. Two
    # persistent workers decode and augment: they must see epoch 1 (keys carry it, see keyed_loader)
    common = demo + TINY + ["--num_train_epochs", "2", "--per_device_train_batch_size", "48",
                            "--dataloader_num_workers", "2"]
    full = fresh_run(common + ["--output_dir", str(tmp_path / "full")])
    part = fresh_run(common + ["--output_dir", str(tmp_path / "cut"), "--stop_after_steps", "4"])
    assert part["stopped_early"] and part["completed_steps"] == 4
    assert not (tmp_path / "cut" / "final").exists()
    resumed = fresh_run(common + ["--output_dir", str(tmp_path / "cut"), "--resume_from_checkpoint", "latest"])
    assert full["completed_steps"] == resumed["completed_steps"] == 6

    w_full = load_file(str(list_checkpoints(tmp_path / "full")[-1] / "model.safetensors"))
    w_resumed = load_file(str(list_checkpoints(tmp_path / "cut")[-1] / "model.safetensors"))
    assert w_full.keys() == w_resumed.keys()
    for key in w_full:
        assert torch.equal(w_resumed[key], w_full[key]), key  # bit-identical, as the README says
    # the weights moved: the comparison is not between two untouched initialisations
    w_start = load_file(str(list_checkpoints(tmp_path / "cut")[0] / "model.safetensors"))
    assert any(not torch.equal(w_start[k], w_full[k]) for k in w_full)
    assert [h["validation/overall/hml_ap"] for h in resumed["history"]] == \
        pytest.approx([h["validation/overall/hml_ap"] for h in full["history"]], abs=1e-6)
    assert resumed["test"]["overall/ap_micro"] == pytest.approx(full["test"]["overall/ap_micro"], abs=1e-6)


def test_two_processes_count_every_sample_once_and_match_one_process(demo: list[str], tmp_path: Path) -> None:
    # no training: both runs evaluate the same seeded initial model; 9 test rows over 2 processes
    # with eval batch 2 leave a padded last batch, which gather_for_metrics must drop
    common = demo + TINY + ["--num_train_epochs", "0", "--per_device_eval_batch_size", "2"]
    one = fresh_run(common + ["--output_dir", str(tmp_path / "one")])
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           str(REPO / "train_scripts" / "finetune.py"), *common, "--output_dir", str(tmp_path / "two")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    two = json.loads((tmp_path / "two" / "test_metrics.json").read_text())
    assert two["num_processes"] == 2  # really two processes (gloo), not two world-size-1 copies
    n_test = one["eval_count"]["test"]
    assert n_test == 9 and two["eval_count"]["test"] == n_test
    assert two["test"]["overall/num_samples"] == one["test"]["overall/num_samples"]
    keys = [k for k, v in one["test"].items() if isinstance(v, float) and not np.isnan(v)]
    assert len(keys) > 50
    for key in keys:
        assert two["test"][key] == pytest.approx(one["test"][key], abs=1e-6), key


def test_param_groups_head_learning_rate_and_no_decay_on_1d() -> None:
    from benthicnet_hf.training.loop import param_groups

    model = torch.nn.Module()
    model.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    model.heads = torch.nn.Linear(4, 2)
    model.backbone[0].weight.requires_grad_(False)  # frozen parameters are left out
    groups = param_groups(model, weight_decay=0.1, lr=1e-3, head_lr=1e-2)
    by_param = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    assert by_param == {
        id(model.backbone[0].bias): (1e-3, 0.0), id(model.backbone[1].weight): (1e-3, 0.0),
        id(model.backbone[1].bias): (1e-3, 0.0), id(model.heads.weight): (1e-2, 0.1), id(model.heads.bias): (1e-2, 0.0),
    }
