"""Crash-safe checkpoints: ``accelerator.save_state`` into a temporary folder, then an atomic rename.

Layout: ``<output_dir>/checkpoints/step_<N>/`` holding accelerate's state plus one
``trainer_state_<rank>.json`` per process. A kill during a save leaves only a
``.tmp-step_<N>`` folder, which ``latest_checkpoint`` ignores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Optional

__all__ = ["checkpoint_root", "save_checkpoint", "latest_checkpoint", "read_trainer_state", "prune_checkpoints"]

_STEP_DIR = re.compile(r"^step_(\d+)$")


def checkpoint_root(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / "checkpoints"


def save_checkpoint(accelerator: Any, output_dir: str | os.PathLike, step: int, state: dict[str, Any]) -> Path:
    """Save the full training state for ``step``; every process must call this."""
    root = checkpoint_root(output_dir)
    final, tmp = root / f"step_{step}", root / f".tmp-step_{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    (tmp / f"trainer_state_{accelerator.process_index}.json").write_text(json.dumps(state))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():  # a re-run over the same step: move the old one aside first
            old = root / f".old-step_{step}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            shutil.rmtree(old)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()
    return final


def latest_checkpoint(output_dir: str | os.PathLike) -> Optional[Path]:
    """The complete checkpoint with the highest step, or None."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return None
    steps = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return max(steps)[1] if steps else None


def read_trainer_state(checkpoint: str | os.PathLike, process_index: int) -> dict[str, Any]:
    """This process's loop position (``global_step``, ``epoch``, ``batch_in_epoch``)."""
    path = Path(checkpoint) / f"trainer_state_{process_index}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: was {checkpoint} written with a different number of processes?")
    return json.loads(path.read_text())


def prune_checkpoints(output_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the ``keep`` most recent complete checkpoints (main process only)."""
    root = checkpoint_root(output_dir)
    steps = sorted((int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name)))
    for _, path in steps[: max(0, len(steps) - keep)]:
        shutil.rmtree(path)
