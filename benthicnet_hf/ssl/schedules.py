"""Learning-rate and EMA-momentum schedules (pure functions of the step, so resume is exact)."""

from __future__ import annotations

import math

__all__ = ["warmup_cosine", "warmup_cosine_lambda", "cosine_momentum"]


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


def cosine_momentum(step: int, total_steps: int, base: float, final: float = 1.0) -> float:
    """BYOL's EMA momentum: ``final - (final - base) * (cos(pi * step / total_steps) + 1) / 2``.

    Starts at ``base`` (step 0) and reaches ``final`` (1.0) at ``step == total_steps``
    (Grill et al. 2020, Sec. 3.2; also used by MoCo v3).
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    t = min(1.0, max(0.0, step / total_steps))
    return final - (final - base) * (math.cos(math.pi * t) + 1.0) / 2.0
