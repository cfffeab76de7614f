"""Learning-rate and EMA-momentum schedules (pure functions of the step, so resume is exact).

The pre-training learning rate is a ``torch`` scheduler (:func:`warmup_cosine_scheduler`), saved
and restored with the rest of the accelerate state. It is not transformers'
``get_cosine_schedule_with_warmup`` (which fine-tuning uses) because that warm-up starts at 0
(``step / warmup``: the first step is wasted) while the pre-training recipe starts at
``base / warmup`` (``(step + 1) / warmup``, tested in ``tests/test_ssl_losses.py``); after the
warm-up both are the same cosine to 0.
"""

from __future__ import annotations

import math

import torch

__all__ = ["warmup_cosine", "warmup_cosine_lambda", "warmup_cosine_scheduler", "cosine_momentum"]


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, base: float, final: float = 0.0) -> float:
    """Linear warm-up from ``base/warmup_steps`` to ``base``, then cosine decay to ``final``.

    ``step`` counts optimiser steps from 0. During warm-up ``base * (step + 1) / warmup_steps``;
    afterwards ``final + (base - final) * (1 + cos(pi * t)) / 2`` with
    ``t = (step - warmup_steps) / max(1, total_steps - warmup_steps)`` clipped to [0, 1].
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final + (base - final) * 0.5 * (1.0 + math.cos(math.pi * t))


def warmup_cosine_lambda(total_steps: int, warmup_steps: int, final_ratio: float = 0.0):
    """Multiplier for ``torch.optim.lr_scheduler.LambdaLR``: ``warmup_cosine(step, ...) / base``."""

    def factor(step: int) -> float:
        return warmup_cosine(step, total_steps, warmup_steps, 1.0, final_ratio)

    return factor


def warmup_cosine_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int
                            ) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` giving optimiser step ``s`` (from 0) the rate ``warmup_cosine(s, ...)`` of each
    group's initial rate. Call ``scheduler.step()`` once after each ``optimizer.step()``."""
    warmup_cosine(0, total_steps, warmup_steps, 1.0)  # argument checks, now rather than at step 0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine_lambda(total_steps, warmup_steps))


def cosine_momentum(step: int, total_steps: int, base: float, final: float = 1.0) -> float:
    """BYOL's EMA momentum: ``final - (final - base) * (cos(pi * step / total_steps) + 1) / 2``.

    Starts at ``base`` (step 0) and reaches ``final`` (1.0) at ``step == total_steps``
    (Grill et al. 2020, Sec. 3.2; also used by MoCo v3).
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    t = min(1.0, max(0.0, step / total_steps))
    return final - (final - base) * (math.cos(math.pi * t) + 1.0) / 2.0
