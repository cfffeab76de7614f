"""``--sync_bn``: BatchNorm statistics over the global batch when training on several processes.

Without it every process normalises with the statistics of its own ``per_device`` batch, so a run
on N processes is not the run on 1 process with the same global batch (the weights differ, and the
running statistics are process 0's, broadcast by DDP). With it every BatchNorm layer of the model
(encoder, classifier heads, SSL projectors and predictors) normalises with the mean and variance of
the global batch, forward and backward.

- On a GPU (CUDA, HPU, XPU): timm's ``convert_sync_batchnorm`` → :class:`torch.nn.SyncBatchNorm`
  (and timm's ``SyncBatchNormAct`` for its ``BatchNormAct2d``, keeping the activation).
- On CPU (gloo): torch has no CPU ``SyncBatchNorm`` (its forward refuses CPU tensors and DDP refuses
  any ``SyncBatchNorm`` in a CPU model), so each BatchNorm layer keeps its class with
  :class:`GlooSyncBatchNorm`'s forward slotted in: the same statistics from differentiable
  all-reduces (:func:`all_reduce`: row count, per-channel sum, then sum
  of squared deviations from the global mean). Exact up to float32 summation order; slower than
  the fused CUDA kernel, meant for CPU runs and tests.

On 1 process the flag is a no-op (logged). Parameters, buffers and state-dict keys are unchanged,
so checkpoints, ``save_pretrained`` and an optimizer built before the conversion are unaffected.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

#: devices torch's own SyncBatchNorm kernel accepts
NATIVE_SYNC_DEVICES = ("cuda", "hpu", "xpu")


class GlooSyncBatchNorm:
    """Mixin slotted in front of a BatchNorm class: training-mode statistics over every process.

    Input ``(batch, C, *)``. In eval mode, or without an initialised process group of more than 1
    process, it defers to the layer's own forward. Keeps timm's ``BatchNormAct2d`` activation
    (``drop`` then ``act`` after the normalisation, as its forward does).
    """

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002 (torch's name)
        dist = torch.distributed
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)  # type: ignore[misc]
        self._check_input_dim(input)  # type: ignore[attr-defined]
        y = _gloo_batch_norm(self, input)  # type: ignore[arg-type]
        if hasattr(self, "act") and hasattr(self, "drop"):  # timm BatchNormAct2d: norm → drop → act
            y = self.act(self.drop(y))  # type: ignore[attr-defined]
        return y


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over processes: every process uses the sum, so the gradient of its
    summand is the sum of the processes' output gradients (itself an all-reduce)."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        out = tensor.clone()
        torch.distributed.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.clone()
        torch.distributed.all_reduce(grad)
        return grad


def all_reduce(tensor: Tensor) -> Tensor:
    """Sum of ``tensor`` over the processes (any shape), differentiable."""
    return _AllReduceSum.apply(tensor)


def _gloo_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
    """Training-mode batch norm of ``x`` ``(batch, C, *)`` with statistics over every process."""
    dims = [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float64)
    torch.distributed.all_reduce(count)  # rows may differ per process
    n = float(count.item())
    mean = all_reduce(x.sum(dims)) / n
    centred = x - mean.view(shape)
    var = all_reduce((centred * centred).sum(dims)) / n  # biased, as BatchNorm normalises
    y = centred * torch.rsqrt(var + bn.eps).view(shape)
    if bn.affine:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    if bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None:
        bn.num_batches_tracked.add_(1)
        momentum = 1.0 / float(bn.num_batches_tracked.item()) if bn.momentum is None else bn.momentum
        with torch.no_grad():
            unbiased = var.detach() * (n / max(n - 1.0, 1.0))
            bn.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
            bn.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
    return y


_GLOO_CLASSES: dict[type, type] = {}


def _gloo_class(cls: type) -> type:
    """``cls`` with :class:`GlooSyncBatchNorm`'s forward in front (one class per BatchNorm class)."""
    if cls not in _GLOO_CLASSES:
        _GLOO_CLASSES[cls] = type(f"GlooSync{cls.__name__}", (GlooSyncBatchNorm, cls), {})
    return _GLOO_CLASSES[cls]


def convert_sync_batchnorm(model: nn.Module, num_processes: int, enabled: bool = True,
                           device: torch.device | str = "cpu") -> nn.Module:
    """Every BatchNorm layer of ``model`` → a synchronised one, when ``enabled`` and ``num_processes > 1``.

    ``device``: where the model trains (``accelerator.device``): torch's ``SyncBatchNorm`` on a GPU,
    :class:`GlooSyncBatchNorm` on CPU. Call it before ``accelerator.prepare`` (DDP wraps the result).

    Returns:
        the converted model (the same object unless ``model`` itself is a BatchNorm layer).
    """
    if not enabled:
        return model
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if num_processes <= 1:
        logger.info("--sync_bn: 1 process, nothing to synchronise (%d BatchNorm layers left as they are)", len(layers))
        return model
    if torch.device(device).type in NATIVE_SYNC_DEVICES:
        from timm.layers import convert_sync_batchnorm as timm_convert

        model = timm_convert(model)
    else:
        for module in layers:
            if not isinstance(module, GlooSyncBatchNorm):
                module.__class__ = _gloo_class(type(module))
    logger.info("--sync_bn: %d BatchNorm layers synchronised over %d processes", len(layers), num_processes)
    return model


def count_sync_batchnorm(model: Any) -> int:
    """How many synchronised BatchNorm layers ``model`` holds (torch's or gloo's)."""
    return sum(isinstance(m, (nn.SyncBatchNorm, GlooSyncBatchNorm)) for m in model.modules())
