"""A training head whose known bits are all positives is refused before any training, with a message
that names the head and its counts; ``--allow_degenerate_heads`` trains anyway, and its metrics are
then NaN (not evaluable), never 1.0."""

from __future__ import annotations

import math
from pathlib import Path

import datasets
import numpy as np
import pytest
from accelerate.state import AcceleratorState, GradientState
from PIL import Image

from benthicnet_hf import Hierarchy
from benthicnet_hf.data.label_support import DegenerateHeadError
from benthicnet_hf.training import parse_args, run_finetune

HIERARCHY = Hierarchy.catami().subset(["relief", "colour"])
TINY = ["--encoder", "test_resnet", "--image_size", "32", "--head_hidden_dim", "0", "--head_dropout", "0.2",
        "--learning_rate", "1e-3", "--warmup_epochs", "0", "--report_to", "none", "--checkpointing_steps", "0",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "8"]


@pytest.fixture(scope="module")
def positives_only_colour(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Relief fully known; colour listed as a non-exhaustive head would be: only its positives known."""
    root = tmp_path_factory.mktemp("degenerate")
    n_relief, n_colour = (len(HIERARCHY.head(h).nodes) for h in ("relief", "colour"))
    rng = np.random.default_rng(0)

    def split(rows: int) -> datasets.Dataset:
        relief = np.eye(n_relief, dtype=np.uint8)[rng.integers(0, 3, rows)]  # one of the three roots
        colour = (rng.random((rows, n_colour)) < 0.3).astype(np.uint8)
        images = [Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)) for _ in range(rows)]
        return datasets.Dataset.from_dict(
            {"image": images, "relief_target": relief.tolist(), "relief_mask": np.ones_like(relief).tolist(),
             "colour_target": colour.tolist(), "colour_mask": colour.tolist()},
            features=datasets.Features({"image": datasets.Image(), **{
                f"{h}_{k}": datasets.List(datasets.Value("uint8")) for h in ("relief", "colour")
                for k in ("target", "mask")}}))

    datasets.DatasetDict({"train": split(24), "validation": split(8), "test": split(8)}).save_to_disk(str(root / "ds"))
    (root / "h.json").write_text(HIERARCHY.to_json())
    return ["--dataset_dir", str(root / "ds"), "--hierarchy", str(root / "h.json")]


def fresh_run(argv: list[str]) -> dict:
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return run_finetune(parse_args(argv))


def test_positives_only_head_is_refused_before_training(positives_only_colour: list[str], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(DegenerateHeadError, match=r"head 'colour': 24 labelled rows, \d+ known positive bits, "
                                                   r"0 known negative bits") as info:
        fresh_run(TINY + positives_only_colour + ["--output_dir", str(tmp_path / "run")])
    assert "--allow_degenerate_heads" in str(info.value) and "relief" not in str(info.value)
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before any step
    printed = capsys.readouterr().out
    assert "label support" in printed and "degenerate" in printed  # the per-split table was shown


def test_allowed_degenerate_head_trains_and_is_not_evaluable(positives_only_colour: list[str],
                                                             tmp_path: Path) -> None:
    result = fresh_run(TINY + positives_only_colour + ["--allow_degenerate_heads",
                                                       "--output_dir", str(tmp_path / "run")])
    test = result["test"]
    assert test["colour/not_evaluable"] == 1.0 and math.isnan(test["colour/ap_micro"])
    assert test["relief/not_evaluable"] == 0.0 and 0.0 <= test["relief/ap_micro"] <= 1.0
    assert test["overall/num_heads"] == 1.0  # overall covers relief only
