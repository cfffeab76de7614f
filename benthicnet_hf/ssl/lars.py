"""LARS optimiser (You et al. 2017, "Large Batch Training of Convolutional Networks").

SGD with momentum whose per-tensor step is scaled by the trust ratio
``eta * ||w|| / (||g|| + weight_decay * ||w|| + eps)``. As in BYOL / Barlow Twins, biases and
normalisation parameters are excluded from both weight decay and the adaptation: put them in a
param group with ``weight_decay=0`` and ``lars_exclude=True`` (``lars_param_groups`` does this).
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch
from torch import nn
from torch.optim.optimizer import Optimizer

__all__ = ["LARS", "lars_param_groups"]


def lars_param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Split trainable parameters: weights (decay + LARS) and 1-D tensors (biases, norms: neither)."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True},
    ]


class LARS(Optimizer):
    """Layer-wise adaptive rate scaling on top of SGD with momentum.

    Args:
        params: parameters or param groups (a group may set ``lars_exclude=True``).
        lr: learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty added to the gradient before the trust ratio.
        trust_coefficient: ``eta``.
        eps: added to the denominator of the trust ratio.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"LARS needs lr, momentum, weight_decay >= 0, got {lr}, {momentum}, {weight_decay}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient, eps=eps, lars_exclude=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            wd, eta, eps = group["weight_decay"], group["trust_coefficient"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if not group["lars_exclude"] and wd != 0:
                    p_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d_p)
                    ratio = torch.where(
                        (p_norm > 0) & (g_norm > 0), eta * p_norm / (g_norm + wd * p_norm + eps), 1.0
                    )
                    d_p = d_p.add(p, alpha=wd).mul_(ratio)
                if group["momentum"] != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = d_p.detach().clone()
                    else:
                        state["momentum_buffer"].mul_(group["momentum"]).add_(d_p)
                    d_p = state["momentum_buffer"]
                p.add_(d_p, alpha=-group["lr"])
        return loss
