"""A fine-tuning run owns its output folder; a resume keeps the run's settings; settings that would
fail late (0 steps, files named like run folders) fail at start; an error on the
main process ends every process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState

from benthicnet_hf.training import FinetuneArguments, list_checkpoints, parse_args, run_finetune
from benthicnet_hf.training.checkpointing import prunable, save_checkpoint
from benthicnet_hf.training.run_dir import RESUME_HARMLESS, changed_settings

REPO = Path(__file__).resolve().parents[1]
TINY = ["--encoder", "test_resnet", "--image_size", "32", "--head_hidden_dim", "0", "--head_dropout", "0.2",
        "--learning_rate", "1e-3", "--warmup_epochs", "0", "--report_to", "none", "--checkpointing_steps", "0",
        "--per_device_train_batch_size", "48"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Data flags for a small demo set (160 images: 133 train, 18 validation, 9 test rows)."""
    root = tmp_path_factory.mktemp("demo")
    return ["--demo", "--data_dir", str(root / "data"), "--demo_num_images", "160", "--demo_image_size", "40",
            "--cache_dir", str(root / "cache")] + TINY


def fresh_run(argv: list[str]) -> dict:
    """One run in this process, as if it were a new one (accelerate keeps global state)."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return run_finetune(parse_args(argv))


def steps(folder: Path) -> list[str]:
    return [p.name for p in list_checkpoints(folder)]


# ------------------------------------------------------------------------ ownership
def test_a_fresh_run_refuses_another_runs_folder_and_overwrite_replaces_it(demo: list[str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    # the earlier, longer run: its checkpoint has a higher step number than anything the new run saves
    old_step = out / "checkpoints" / "step_00000099"
    old_step.mkdir(parents=True)
    (old_step / "model.safetensors").write_bytes(b"old run")
    (out / "final").mkdir()
    (out / "test_metrics.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"already holds another run \(checkpoints, final, test_metrics.json\)"):
        fresh_run(demo + ["--output_dir", str(out), "--num_train_epochs", "1"])
    assert old_step.is_dir() and (out / "final").is_dir()  # refused: nothing touched

    # --overwrite_output_dir clears the old run; --save_total_limit then keeps the NEW checkpoints
    fresh_run(demo + ["--output_dir", str(out), "--num_train_epochs", "2", "--checkpointing_steps", "1",
                      "--save_total_limit", "2", "--overwrite_output_dir"])
    assert steps(out) == ["step_00000005", "step_00000006"]  # 3 steps per epoch, 2 epochs
    assert json.loads((out / "test_metrics.json").read_text())["best_epoch"] in (0, 1)
    assert (out / "final" / "config.json").is_file()


def test_save_total_limit_never_deletes_the_checkpoint_just_saved(tmp_path: Path) -> None:
    AcceleratorState._reset_state(True)
    accelerator = Accelerator(cpu=True)
    accelerator.prepare(torch.nn.Linear(3, 2))
    (tmp_path / "checkpoints" / "step_00000050").mkdir(parents=True)  # a higher step, left from elsewhere
    saved = save_checkpoint(accelerator, tmp_path, step=3, save_total_limit=1)
    assert steps(tmp_path) == ["step_00000003"] and saved.is_dir()
    # the rule by hand: the current one plus the (limit - 1) newest others survive
    ckpts = [tmp_path / f"step_{i}" for i in (1, 2, 4, 7)]
    assert prunable(ckpts, ckpts[1], 2) == ckpts[:1] + ckpts[2:3]
    assert prunable(ckpts, ckpts[3], 3) == ckpts[:1]
    assert prunable(ckpts, ckpts[0], 1) == ckpts[1:]


@pytest.mark.parametrize("name", ["best", "checkpoints", "final"])
def test_a_file_where_the_run_needs_a_folder_fails_at_start(name: str, demo: list[str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_text("not a folder")
    flags = ["--overwrite_output_dir"] if name != "checkpoints" else []  # overwrite or not: still refused
    with pytest.raises(NotADirectoryError, match=rf"{name} is a file"):
        fresh_run(demo + ["--output_dir", str(out), "--num_train_epochs", "1", *flags])
    assert sorted(p.name for p in out.iterdir()) == [name]  # failed before training wrote anything


# ------------------------------------------------------------------------ resume
def test_resume_refuses_changed_settings_and_allows_the_harmless_ones(demo: list[str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    common = demo + ["--output_dir", str(out), "--num_train_epochs", "2"]
    fresh_run(common + ["--stop_after_steps", "2"])
    saved = json.loads((out / "checkpoints" / "step_00000002" / "run_args.json").read_text())
    assert saved["learning_rate"] == 1e-3 and saved["head_dropout"] == 0.2

    with pytest.raises(ValueError) as err:
        fresh_run(common + ["--resume_from_checkpoint", "latest", "--learning_rate", "5e-4",
                            "--head_dropout", "0.3", "--head_hidden_dim", "8"])
    message = str(err.value)
    for line in ("--head_dropout: 0.2 in the checkpoint, 0.3 now", "--head_hidden_dim: 0 in the checkpoint, 8 now",
                 "--learning_rate: 0.001 in the checkpoint, 0.0005 now"):
        assert line in message
    assert "--seed" not in message  # only what differs

    # logging, save cadence and eval batch may change; the run then finishes
    result = fresh_run(common + ["--resume_from_checkpoint", "latest", "--logging_steps", "1",
                                 "--save_total_limit", "1", "--per_device_eval_batch_size", "4"])
    assert result["completed_steps"] == 6 and steps(out) == ["step_00000006"]


def test_resume_of_an_older_checkpoint_in_its_own_folder_is_refused(demo: list[str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    fresh_run(demo + ["--output_dir", str(out), "--num_train_epochs", "1", "--checkpointing_steps", "1",
                      "--save_total_limit", "0"])
    assert steps(out) == ["step_00000001", "step_00000002", "step_00000003"]
    with pytest.raises(FileExistsError, match="newer checkpoints exist \\(step_00000002, step_00000003\\)"):
        fresh_run(demo + ["--output_dir", str(out), "--num_train_epochs", "1",
                          "--resume_from_checkpoint", str(out / "checkpoints" / "step_00000001")])
    with pytest.raises(ValueError, match="give one of them"):
        fresh_run(demo + ["--output_dir", str(out), "--num_train_epochs", "1", "--resume_from_checkpoint", "latest",
                          "--overwrite_output_dir"])


def test_changed_settings_against_a_brute_force_diff() -> None:
    old = FinetuneArguments(output_dir="a", demo=True).to_dict()
    new = FinetuneArguments(output_dir="b", demo=True, seed=3, logging_steps=1, report_to="none",
                            per_device_train_batch_size=4).to_dict()
    expected = sorted((k, old[k], new[k]) for k in old if old[k] != new[k] and k not in RESUME_HARMLESS)
    assert expected == [("per_device_train_batch_size", 128, 4), ("seed", 0, 3)]
    assert changed_settings(old, new) == expected
    assert changed_settings({**old, "gone": 1}, new)[0] == ("gone", 1, "(absent)")
    # every allowed flag is a real flag (a typo in the allow-list would silently check nothing)
    assert RESUME_HARMLESS <= set(old)


# ------------------------------------------------------------------------ late failures, now early
def test_no_optimisation_step_is_an_error_not_an_untrained_final_model(demo: list[str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="1 training row.*no training step"):
        fresh_run(demo + ["--output_dir", str(out), "--num_train_epochs", "1", "--max_train_samples", "1"])
    assert not (out / "final").exists() and not (out / "checkpoints").exists()


def test_last_training_batch_of_one_is_dropped_with_a_log_line(demo: list[str], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    # 133 training rows, batch 12: 11 full batches and one of 1 sample (BatchNorm cannot train on it)
    result = fresh_run(demo + ["--output_dir", str(tmp_path / "run"), "--num_train_epochs", "1",
                               "--per_device_train_batch_size", "12"])
    assert result["completed_steps"] == 133 // 12
    assert "the last batch of 1 sample is dropped" in capsys.readouterr().out


# ------------------------------------------------------------------------ every rank ends
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


MAIN_FAILS = """
import sys
from accelerate import Accelerator
from benthicnet_hf.training.main_process import MainProcessError, run_on_main

acc = Accelerator(cpu=True)
def save():
    raise OSError("disk full (simulated)")
try:
    run_on_main(acc, "saving best/", save)
except MainProcessError as err:
    print(f"rank {acc.process_index}: {err}", flush=True)
    sys.exit(3)
acc.wait_for_everyone()  # without run_on_main the other rank would wait here forever
"""


def test_an_error_on_the_main_process_ends_every_process(tmp_path: Path) -> None:
    script = tmp_path / "main_fails.py"
    script.write_text(MAIN_FAILS)
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), str(script)]
    # a hang fails the test through the timeout instead of blocking the suite
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode != 0
    assert "OSError: disk full (simulated)" in proc.stderr  # the main process's own error
    assert "rank 1: the main process failed while saving best/ (OSError: disk full (simulated))" in proc.stdout


def test_offline_push_message_names_hf_upload_and_the_kept_folder(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from benthicnet_hf.training.publish import PushError, push_final

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    final = tmp_path / "final"
    final.mkdir()
    (final / "config.json").write_text("{}")
    args = FinetuneArguments(output_dir=str(tmp_path), demo=True, push_to_hub=True, hub_model_id="org/m")
    with pytest.raises(PushError) as err:
        push_final(tmp_path, args)
    assert f"`hf upload org/m {final} .`" in str(err.value) and "huggingface-cli" not in str(err.value)
    assert (final / "config.json").is_file()


# ------------------------------------------------------------------------ diverging run
def test_a_diverging_run_stops_with_non_finite_logits_and_says_where(demo: list[str], tmp_path: Path) -> None:
    from benthicnet_hf.constraint import NonFiniteLogitsError

    argv = demo + ["--output_dir", str(tmp_path / "run"), "--num_train_epochs", "3", "--max_grad_norm", "0",
                   "--per_device_train_batch_size", "16", "--learning_rate", "1e20", "--head_learning_rate", "1e20"]
    with pytest.raises(NonFiniteLogitsError, match=r"epoch \d+, batch \d+ \(optimizer step \d+, process 0\): "
                                                   r"non-finite logits") as info:
        fresh_run(argv)
    assert info.value.count > 0 and info.value.rows


def test_step_logger_logs_the_window_mean_at_logging_steps_and_the_last_step(caplog) -> None:
    # the one logging helper of the three loops: mean loss since the last log, extra scalars, bar
    from benthicnet_hf.training.run_log import StepLogger, resolve_tracker

    class Bar:
        def __init__(self) -> None:
            self.n, self.postfix = 0, None

        def update(self, k: int) -> None:
            self.n += k

        def set_postfix(self, **kw: str) -> None:
            self.postfix = kw

    AcceleratorState._reset_state(True)
    accelerator = Accelerator(cpu=True)
    logged: list[tuple[dict, int]] = []
    accelerator.log = lambda values, step: logged.append((values, step))
    bar = Bar()
    log = StepLogger(accelerator, bar, logging_steps=2, last_step=5)
    means = [log.step(s, torch.tensor(float(s)), lr=0.1 * s) for s in range(1, 6)]
    assert means == [None, 1.5, None, 3.5, 5.0] and bar.n == 5 and bar.postfix == {"loss": "5.0000"}
    assert logged == [({"train/loss": 1.5, "train/lr": 0.2}, 2), ({"train/loss": 3.5, "train/lr": 0.4}, 4),
                      ({"train/loss": 5.0, "train/lr": 0.5}, 5)]
    with pytest.raises(ValueError, match="--logging_steps must be >= 1"):
        StepLogger(accelerator, bar, logging_steps=0)
    assert resolve_tracker("none") is None and resolve_tracker("wandb") == "wandb"
    AcceleratorState._reset_state(True)


def test_checkpoint_names_and_an_old_step_n_folder(tmp_path: Path) -> None:
    from benthicnet_hf.training.checkpointing import checkpoint_name, find_checkpoint

    assert checkpoint_name(4) == "step_00000004" and checkpoint_name(123456789) == "step_123456789"
    (tmp_path / "checkpoints" / "step_123456789").mkdir(parents=True)
    assert find_checkpoint(tmp_path, "latest").name == "step_123456789"
    (tmp_path / "old" / "checkpoints" / "step_4").mkdir(parents=True)
    with pytest.raises(ValueError, match="benthicnet_hf < 0.2"):
        find_checkpoint(tmp_path / "old", "latest")
    with pytest.raises(ValueError, match="benthicnet_hf < 0.2"):
        find_checkpoint(tmp_path, str(tmp_path / "old" / "checkpoints" / "step_4"))
    assert find_checkpoint(tmp_path / "empty", "latest", missing_ok=True) is None
