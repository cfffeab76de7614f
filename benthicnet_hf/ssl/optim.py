"""Optimiser per method: LARS for the ResNet joint-embedding recipes, AdamW for ViT recipes."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .lars import LARS, lars_param_groups

__all__ = ["scaled_learning_rate", "build_optimizer"]


def scaled_learning_rate(base_lr: float, global_batch_size: int) -> float:
    """Linear scaling rule used by all five papers: ``lr = base_lr * global_batch / 256``."""
    return base_lr * global_batch_size / 256.0


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    weight_decay: float,
    *,
    momentum: float = 0.9,
    betas: Optional[Sequence[float]] = None,
    trust_coefficient: float = 0.001,
) -> torch.optim.Optimizer:
    """``"lars"``, ``"adamw"`` or ``"sgd"`` over the trainable parameters.

    Biases and normalisation parameters (1-D tensors) get no weight decay (and no LARS
    adaptation), as in the reference recipes. The learning-rate schedule
    (:func:`.schedules.warmup_cosine_scheduler`) scales each group's initial ``lr``.
    """
    groups = lars_param_groups(model, weight_decay)
    name = name.lower()
    if name == "lars":
        opt: torch.optim.Optimizer = LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay,
                                          trust_coefficient=trust_coefficient)
    elif name == "adamw":
        for g in groups:
            g.pop("lars_exclude", None)
        opt = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=tuple(betas or (0.9, 0.999)))
    elif name == "sgd":
        for g in groups:
            g.pop("lars_exclude", None)
        opt = torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        raise ValueError(f"unknown optimizer {name!r}; expected 'lars', 'adamw' or 'sgd'")
    return opt
