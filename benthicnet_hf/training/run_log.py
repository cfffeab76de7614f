"""Logging and progress of every training loop: tracker choice, run config, step metrics, progress bar.

Fine-tuning, self-supervised and labelled contrastive pre-training all report the same way: a
``tqdm`` bar on the local main process, and every ``--logging_steps`` optimizer steps the training
loss averaged over those steps and over all processes, sent to the tracker (``accelerator.log``),
the module logger and the bar.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import asdict, is_dataclass
from typing import Any

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

    return tqdm(total=total, initial=initial, desc=desc, disable=not accelerator.is_local_main_process)


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
