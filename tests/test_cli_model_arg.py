"""``benthicnet-hf predict --model``: a missing folder says so (not a Hub repo-id message); training
checkpoint and output folders are named as such and point at ``final/`` / ``best/``."""

from __future__ import annotations

from pathlib import Path

import pytest

from benthicnet_hf.cli import main


def predict(model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    image = tmp_path / "img.png"
    image.write_bytes(b"")  # never read: the model check comes first
    rc = main(["predict", "--model", model, str(image), "--output", str(tmp_path / "out.csv"), "--no_progress"])
    return rc, capsys.readouterr().err


def run_folder(tmp_path: Path, models: tuple[str, ...] = ("final",)) -> Path:
    """A training output folder: checkpoints/step_00000004 (accelerate state) and saved models."""
    run = tmp_path / "run"
    step = run / "checkpoints" / "step_00000004"
    step.mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl"):
        (step / name).write_bytes(b"x")
    for name in models:
        (run / name).mkdir()
        (run / name / "config.json").write_text("{}")
    return run


@pytest.mark.parametrize("model", ["missing_dir/final/", "./final", "/nonexistent/run/final", "a/b/c"])
def test_missing_path_is_no_such_folder(model, tmp_path, capsys):
    rc, err = predict(model, tmp_path, capsys)
    assert rc == 2
    assert f"--model {model}: no such folder" in err
    assert "huggingface.co" not in err and "repo id" not in err.lower()


def test_missing_hub_like_id_says_no_such_folder_first(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    rc, err = predict("someone/no-such-model", tmp_path, capsys)
    assert rc == 2 and "--model someone/no-such-model: no such folder" in err
    assert "and no Hub model of that id could be loaded" in err


def test_training_checkpoint_points_at_final_and_best(tmp_path, capsys):
    run = run_folder(tmp_path, ("final", "best"))
    rc, err = predict(str(run / "checkpoints" / "step_00000004"), tmp_path, capsys)
    assert rc == 2 and "a training checkpoint" in err
    assert f"use {run / 'final'} or {run / 'best'}" in err
    rc, err = predict(str(run / "checkpoints"), tmp_path, capsys)
    assert "the training checkpoints folder, not a saved model" in err and str(run / "final") in err
    rc, err = predict(str(run), tmp_path, capsys)
    assert "a training output folder, not a saved model" in err and str(run / "final") in err


def test_checkpoint_of_an_unfinished_run_says_there_is_no_final_yet(tmp_path, capsys):
    run = run_folder(tmp_path, ())
    rc, err = predict(str(run / "checkpoints" / "step_00000004"), tmp_path, capsys)
    assert rc == 2 and f"none in {run} yet" in err


def test_other_folder_and_file_are_named(tmp_path, capsys):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("hi")
    rc, err = predict(str(tmp_path / "stuff"), tmp_path, capsys)
    assert rc == 2 and "no config.json in the folder (it holds ['notes.txt'])" in err
    rc, err = predict(str(tmp_path / "stuff" / "notes.txt"), tmp_path, capsys)
    assert rc == 2 and "a file, not a model folder" in err
