"""Crash-safe training checkpoints of every loop: ``accelerator.save_state`` into a temp folder, then a rename.

The one checkpoint implementation of fine-tuning (:mod:`.loop`), self-supervised pre-training
(:mod:`benthicnet_hf.ssl.trainer`) and labelled contrastive pre-training
(:mod:`benthicnet_hf.contrastive.train`). Layout: ``OUTPUT_DIR/checkpoints/step_00000120/`` (model,
optimizer, scheduler, RNG states, registered objects such as :class:`TrainingState`, the run's
arguments ``run_args.json`` and, for loops whose position differs per process, one
``trainer_state_<rank>.json`` per process). A checkpoint is first written to ``.tmp-step_XXXXXXXX`` and
renamed only once every process has finished writing, so a process killed mid-save leaves the
previous checkpoints untouched and ``latest`` never resolves to a half-written folder. Leftover
temp folders are removed by the next save.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .main_process import run_on_main

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
_STEP_DIR = re.compile(r"^step_(\d+)$")
#: This naming (8 digits) is the only one written; ``step_4`` was the pre-training loop's before 0.2.
_CURRENT_NAME = re.compile(r"^step_\d{8,}$")
_TMP_PREFIX = ".tmp-"
#: The run's arguments, stored in each checkpoint (read back by :mod:`.run_dir`).
RUN_ARGS_FILE = "run_args.json"
#: One per process: that process's loop position (:func:`read_process_state`).
PROCESS_STATE_FILE = "trainer_state_{rank}.json"


@dataclass
class TrainingState:
    """Loop position and best-model bookkeeping, saved with every checkpoint.

    ``epoch`` is the current epoch; ``batches_done`` the micro-batches of it already trained
    (equal to the epoch length once it only awaits evaluation).
    """

    epoch: int = 0
    batches_done: int = 0
    completed_steps: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def checkpoints_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / CHECKPOINTS


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (temp folders are never listed)."""
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_name(step: int) -> str:
    """The folder name of the checkpoint after ``step`` optimizer steps: ``step_00000004``."""
    return f"step_{step:08d}"


def find_checkpoint(output_dir: str | Path, spec: str, missing_ok: bool = False) -> Path | None:
    """Resolve ``--resume_from_checkpoint``: ``"latest"`` or a checkpoint folder.

    ``missing_ok``: ``"latest"`` with no checkpoint yet returns None (start fresh) instead of raising.

    Raises:
        FileNotFoundError: naming the folder searched or the path given.
        ValueError: a temporary folder, or a checkpoint in the pre-0.2 pre-training format (``step_4``).
    """
    if spec == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            if missing_ok:
                logger.info("--resume_from_checkpoint latest: no checkpoint in %s, starting fresh",
                            checkpoints_dir(output_dir))
                return None
            raise FileNotFoundError(f"--resume_from_checkpoint latest: no checkpoint in {checkpoints_dir(output_dir)}")
        path = found[-1]
    else:
        path = Path(spec)
        if not path.is_dir():
            raise FileNotFoundError(f"--resume_from_checkpoint {spec}: no such checkpoint folder")
        if path.name.startswith(_TMP_PREFIX):
            raise ValueError(f"--resume_from_checkpoint {spec}: an unfinished (temporary) checkpoint")
    if _STEP_DIR.match(path.name) and not _CURRENT_NAME.match(path.name):
        # the old pre-training format kept its settings and scheduler elsewhere: refuse, do not guess
        raise ValueError(f"--resume_from_checkpoint {path}: a checkpoint of benthicnet_hf < 0.2 (named step_N, "
                         "not step_00000000); it cannot be resumed by this version. Finish that run with the "
                         "version that started it, or start a new run in a new --output_dir")
    return path


def save_checkpoint(accelerator: Any, output_dir: str | Path, step: int, save_total_limit: int | None = None,
                    run_args: dict[str, Any] | None = None, process_state: dict[str, Any] | None = None) -> Path:
    """Save the full training state of every process as ``checkpoints/step_{step:08d}``.

    All processes must call this (``save_state`` writes one RNG file per process). The rename is
    done by the main process after a barrier, so the final name appears only when complete.
    ``run_args`` (the run's arguments as JSON-able dict) is stored beside the state as
    ``run_args.json``, for the resume check of :mod:`.run_dir`. ``process_state`` (JSON-able, e.g.
    :meth:`TrainingState.state_dict`) is written by each process as ``trainer_state_<rank>.json``,
    for loops whose position may differ between processes (a streamed shard per process).
    ``save_total_limit`` deletes the oldest checkpoints but never the one just saved.
    """
    root = checkpoints_dir(output_dir)
    final = root / checkpoint_name(step)
    tmp = root / f"{_TMP_PREFIX}{final.name}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(f"{_TMP_PREFIX}*"):  # left by a process killed mid-save
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if process_state is not None:  # save_state made ``tmp`` on every process
        (tmp / PROCESS_STATE_FILE.format(rank=accelerator.process_index)).write_text(json.dumps(process_state))
    accelerator.wait_for_everyone()
    # main process only; a failure there (disk full, permissions) ends every process (run_on_main)
    run_on_main(accelerator, f"publishing checkpoint {final}",
                lambda: _publish(tmp, final, save_total_limit, run_args))
    return final


def _publish(tmp: Path, final: Path, save_total_limit: int | None, run_args: dict[str, Any] | None) -> None:
    """Main process: add ``run_args.json``, flush, rename ``tmp`` to ``final``, prune old checkpoints."""
    if run_args is not None:
        (tmp / RUN_ARGS_FILE).write_text(json.dumps(run_args, indent=2, sort_keys=True))
    _fsync_tree(tmp)
    if final.exists():  # the same step saved again after a resume: replace it
        old = final.with_name(f"{_TMP_PREFIX}old-{final.name}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    if save_total_limit is not None and save_total_limit > 0:
        for old in prunable(list_checkpoints(final.parent.parent), final, save_total_limit):
            shutil.rmtree(old, ignore_errors=True)


def read_process_state(checkpoint: str | Path, process_index: int) -> dict[str, Any]:
    """This process's ``process_state`` saved in ``checkpoint`` (see :func:`save_checkpoint`).

    Raises:
        FileNotFoundError: the file is missing (another number of processes wrote the checkpoint).
    """
    path = Path(checkpoint) / PROCESS_STATE_FILE.format(rank=process_index)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: was {checkpoint} written with a different number of processes?")
    return json.loads(path.read_text())


def prunable(checkpoints: list[Path], current: Path, limit: int) -> list[Path]:
    """The checkpoints ``--save_total_limit`` deletes: the oldest, keeping ``current`` (just saved)
    plus the ``limit - 1`` newest others. ``checkpoints`` is ordered oldest first."""
    others = [p for p in checkpoints if p != current]
    keep = max(limit - 1, 0)
    return others[:len(others) - keep] if keep else others


def _fsync_tree(folder: Path) -> None:
    """Flush file contents to disk before the rename publishes them (a crash after the rename
    must not expose empty files)."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
