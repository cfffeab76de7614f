"""Logging and progress of every training loop: tracker choice, run config, step metrics, progress bar.

Fine-tuning, self-supervised and labelled contrastive pre-training all report the same way: a
``tqdm`` bar on the local main process, and every ``--logging_steps`` optimizer steps the training
loss averaged over those steps and over all processes, sent to the tracker (``accelerator.log``),
the module logger and the bar.

What reaches the console stays readable: the bar is drawn only on a terminal (in a log file or a
pipe, redrawn bars become ``\r`` and ``ESC[A`` noise); one line per epoch (:func:`epoch_line`,
printed above the bar, never through it); our own ``save_pretrained`` calls draw no "Writing model
shards" bar (:func:`quiet_saves`); the encoder weights loaded at start-up are named once
(:func:`announce_encoder_load`: file, format, tensors).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

logger = logging.getLogger(__name__)


def resolve_tracker(report_to: str | None) -> str | None:
    """``--report_to`` → accelerate's ``log_with``: ``none``/empty → None, ``auto`` → tensorboard when
    installed (else None), anything else (``tensorboard``, ``wandb``, ``all``) as given."""
    if report_to in (None, "", "none"):
        return None
    if report_to == "auto":
        return "tensorboard" if importlib.util.find_spec("tensorboard") else None
    return report_to


def init_trackers(accelerator: Any, project: str, args: Any) -> None:
    """Start the trackers (if any) with the run's arguments as config (non-scalars as strings)."""
    if not accelerator.log_with:
        return
    values = asdict(args) if is_dataclass(args) else dict(args)
    config = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in values.items()}
    accelerator.init_trackers(project, config=config)


def progress_bar(accelerator: Any, total: int, initial: int = 0, desc: str = "train") -> Any:
    """The run's progress bar in optimizer steps (shown by the local main process only)."""
    from tqdm.auto import tqdm

    # disable=None: tqdm draws only on a terminal; off the main process never
    return tqdm(total=total, initial=initial, desc=desc, disable=None if accelerator.is_local_main_process else True)


def epoch_line(accelerator: Any, text: str) -> None:
    """Print one summary line (main process), above any open progress bar instead of through it."""
    from tqdm.auto import tqdm

    if accelerator.is_main_process:
        tqdm.write(text)


@contextlib.contextmanager
def quiet_saves() -> Iterator[None]:
    """Within: transformers draws no progress bar ("Writing model shards", once per save)."""
    from transformers.utils import logging as hf_logging

    from ..data.progress import bars_off

    with bars_off(hf_logging):
        yield


def describe_encoder_load(report: Any) -> str:
    """One line naming the encoder weights loaded (a ``LoadReport``): the file (folder/file name, no
    full path), its file type, the key format it was converted from, and the number of tensors."""
    from ..checkpoint_io import FOLDER_WEIGHT_FILES

    source = Path(report.source) if report.source else None
    if source is not None and source.is_dir():  # a folder: the weights file it was read from
        source = next((source / n for n in FOLDER_WEIGHT_FILES if (source / n).is_file()), source)
    name = f"{source.parent.name}/{source.name}" if source is not None else "state dict"
    kind = source.suffix.lstrip(".") if source is not None and source.suffix else "tensors"
    ignored = f", {len(report.ignored)} classifier tensors ignored" if report.ignored else ""
    return (f"encoder weights: {name} ({kind}, {report.converted_from} format, key prefix {report.prefix!r}): "
            f"{report.loaded} tensors loaded{ignored}")


def announce_encoder_load(report: Any) -> None:
    """Print :func:`describe_encoder_load` once (local main process of the running accelerate state)."""
    from accelerate import PartialState

    if PartialState().is_local_main_process:
        print(describe_encoder_load(report), flush=True)


class StepLogger:
    """Per optimizer step: advance the bar; every ``logging_steps`` (and at ``last_step``) log the
    mean loss since the last log, reduced over processes, with the extra scalars given.

    Every process must call :meth:`step` (the loss is reduced across processes).
    """

    def __init__(self, accelerator: Any, progress: Any, logging_steps: int, prefix: str = "train/",
                 last_step: int | None = None) -> None:
        if logging_steps < 1:
            raise ValueError(f"--logging_steps must be >= 1, got {logging_steps}")
        self.accelerator, self.progress, self.logging_steps = accelerator, progress, logging_steps
        self.prefix, self.last_step = prefix, last_step
        self._sum = torch.zeros((), device=accelerator.device)
        self._count = 0

    def step(self, step: int, loss: torch.Tensor, **scalars: float) -> float | None:
        """Record the loss (scalar tensor) of optimizer step ``step`` (counted from 1).

        Returns the logged mean loss on a logging step, else None.
        """
        self._sum += loss.detach().float()
        self._count += 1
        self.progress.update(1)
        if step % self.logging_steps and step != self.last_step:
            return None
        mean = self.accelerator.reduce(self._sum, reduction="mean").item() / self._count
        self._sum.zero_()
        self._count = 0
        logs = {f"{self.prefix}loss": mean, **{f"{self.prefix}{k}": v for k, v in scalars.items()}}
        self.accelerator.log(logs, step=step)
        if self.accelerator.is_main_process:
            logger.info("step %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in logs.items()))
        self.progress.set_postfix(loss=f"{mean:.4f}")
        return mean
