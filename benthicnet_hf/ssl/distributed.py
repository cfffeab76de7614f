"""Cross-process batch statistics: all-gather that keeps the gradient.

Barlow Twins' cross-correlation and MoCo v3's negatives are defined over the *global* batch.
``gather_with_grad`` concatenates a per-process tensor across the process group and lets the
gradient flow back to each process's own slice.

Gradient convention: the backward pass sums the incoming gradients of all processes before
taking this process's slice. When every process evaluates the same global loss ``L`` and DDP
averages parameter gradients over ``W`` processes, the result is exactly ``dL/dθ`` of a single
process that saw the concatenated batch (the ``W`` from the sum cancels DDP's ``1/W``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["world_size", "rank", "gather_with_grad", "gather_no_grad"]


def world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """Rank of this process in the default group (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.batch_size = x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        # Sum over processes: each one's loss depends on every process's slice.
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.batch_size
        return grad[start : start + ctx.batch_size]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` over all processes along dim 0, differentiably.

    Args:
        x: ``(batch, ...)``; every process must pass the same shape.

    Returns:
        ``(world_size * batch, ...)`` in rank order; ``x`` itself when not distributed.
    """
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` over all processes along dim 0 without a gradient (e.g. MoCo keys).

    Args:
        x: ``(batch, ...)``, same shape on every process.

    Returns:
        ``(world_size * batch, ...)`` in rank order.
    """
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)
