"""Barlow Twins (Zbontar et al. 2021, "Barlow Twins: Self-Supervised Learning via Redundancy Reduction").

With ``ẑ`` the projections standardised along the batch (mean 0, biased std 1, eps 1e-5 as
BatchNorm1d(affine=False)), ``C = ẑ_Aᵀ ẑ_B / N`` over the *global* batch of ``N`` samples and
``L = Σ_i (1 - C_ii)² + λ Σ_i Σ_{j≠i} C_ij²`` with ``λ = 5.1e-3`` (official code).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from .distributed import gather_with_grad
from .encoder import build_timm_encoder
from .projectors import ProjectionMLP
from .views import forward_views

__all__ = ["barlow_twins_loss", "BarlowTwinsLoss", "BarlowTwins"]


def _standardise(z: torch.Tensor, eps: float) -> torch.Tensor:
    mean = z.mean(dim=0, keepdim=True)
    var = z.var(dim=0, unbiased=False, keepdim=True)
    return (z - mean) * torch.rsqrt(var + eps)


def barlow_twins_loss(
    z_a: torch.Tensor, z_b: torch.Tensor, lambda_param: float = 5.1e-3, *, gather: bool = True, eps: float = 1e-5
) -> torch.Tensor:
    """Barlow Twins loss on the cross-correlation of the two views.

    Args:
        z_a, z_b: projections ``(batch, dim)`` of views A and B (per process).
        lambda_param: weight of the redundancy-reduction (off-diagonal) term.
        gather: concatenate the batch over all processes (with gradient) first, so that the
            standardisation and ``C`` use the global batch as in the paper.
        eps: added to the variance.

    Returns:
        scalar; identical on every process.
    """
    if z_a.shape != z_b.shape or z_a.ndim != 2:
        raise ValueError(f"expected two (batch, dim) tensors of equal shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    if gather:
        z_a, z_b = gather_with_grad(z_a), gather_with_grad(z_b)
    n = z_a.shape[0]
    if n < 2:
        raise ValueError("Barlow Twins needs a (global) batch of at least 2 samples")
    # Compute in float32 at least: the d x d correlation is sensitive to bf16 rounding.
    dtype = torch.promote_types(z_a.dtype, torch.float32)
    c = _standardise(z_a.to(dtype), eps).T @ _standardise(z_b.to(dtype), eps) / n
    diag = torch.diagonal(c)
    on_diag = (diag - 1.0).pow(2).sum()
    off_diag = c.pow(2).sum() - diag.pow(2).sum()
    return on_diag + lambda_param * off_diag


class BarlowTwinsLoss(nn.Module):
    """Module form of :func:`barlow_twins_loss`.

    Example:
        >>> loss = BarlowTwinsLoss(lambda_param=5.1e-3)(z_a, z_b)  # (batch, dim) each
    """

    def __init__(self, lambda_param: float = 5.1e-3, gather: bool = True) -> None:
        super().__init__()
        self.lambda_param = lambda_param
        self.gather = gather

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return barlow_twins_loss(z_a, z_b, self.lambda_param, gather=self.gather)


class BarlowTwins(nn.Module):
    """Encoder + 3-layer projector (paper: 8192-8192-8192, no bias on the last layer).

    Args:
        encoder_name: timm model name.
        proj_hidden_dim, proj_dim: projector widths.
        lambda_param: off-diagonal weight.
        batched_views: forward both views as one batch of ``2B`` (faster on a GPU, but the BatchNorm
            layers then use statistics over both views: see :mod:`.views`); default: one forward per view
            as in the paper.
    """

    default_optimizer = {"name": "lars", "lr": 0.2, "weight_decay": 1.5e-6}

    def __init__(
        self,
        encoder_name: str = "resnet50",
        *,
        image_size: Optional[int] = None,
        proj_hidden_dim: int = 8192,
        proj_dim: int = 8192,
        lambda_param: float = 5.1e-3,
        encoder_kwargs: Optional[dict[str, Any]] = None,
        batched_views: bool = False,
    ) -> None:
        super().__init__()
        self.batched_views = batched_views
        self.encoder = build_timm_encoder(encoder_name, image_size, **(encoder_kwargs or {}))
        d = self.encoder.num_features
        self.projector = ProjectionMLP([d, proj_hidden_dim, proj_hidden_dim, proj_dim], last_bias=False)
        self.criterion = BarlowTwinsLoss(lambda_param)

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """Two augmented views ``(batch, 3, H, W)`` -> scalar loss."""
        z_a, z_b = forward_views(self._project, view1, view2, batched=self.batched_views)
        return self.criterion(z_a, z_b)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.encoder(x))
