"""BYOL (Grill et al. 2020, "Bootstrap Your Own Latent").

Loss per direction: ``||p̄ - z̄'||² = 2 - 2 cos(p, z')`` with ``p`` the online prediction of one
view and ``z'`` the EMA target's projection of the other; the total is the symmetric sum,
averaged over the batch. The target follows ``ξ <- τ ξ + (1 - τ) θ`` with
``τ = 1 - (1 - τ_base)(cos(π k / K) + 1) / 2`` (``τ_base = 0.996``).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .encoder import build_timm_encoder, ema_update_, make_ema_copy
from .projectors import ProjectionMLP
from .schedules import cosine_momentum
from .views import forward_views

__all__ = ["byol_loss", "BYOLLoss", "BYOL"]


def byol_loss(p: torch.Tensor, z_target: torch.Tensor) -> torch.Tensor:
    """``mean_b (2 - 2 cos(p_b, z_b))``; ``z_target`` is treated as a constant.

    Args:
        p: online predictions ``(batch, dim)``.
        z_target: target projections of the other view ``(batch, dim)``.

    Returns:
        scalar in [0, 4].
    """
    if p.shape != z_target.shape or p.ndim != 2:
        raise ValueError(f"expected two (batch, dim) tensors of equal shape, got {tuple(p.shape)} and {tuple(z_target.shape)}")
    return (2.0 - 2.0 * F.cosine_similarity(p, z_target.detach(), dim=1)).mean()


class BYOLLoss(nn.Module):
    """Symmetric BYOL loss ``byol_loss(p1, z2') + byol_loss(p2, z1')``.

    Example:
        >>> loss = BYOLLoss()(p1, p2, z1_target, z2_target)  # all (batch, dim)
    """

    def forward(self, p1: torch.Tensor, p2: torch.Tensor, z1_target: torch.Tensor, z2_target: torch.Tensor) -> torch.Tensor:
        """Predictions ``p*`` and target projections ``z*_target``, each ``(batch, dim)`` -> scalar."""
        return byol_loss(p1, z2_target) + byol_loss(p2, z1_target)


class BYOL(nn.Module):
    """Online encoder + projector + predictor; EMA target encoder + projector.

    Args:
        encoder_name: timm model name.
        proj_hidden_dim, proj_dim: projector/predictor widths (paper: 4096, 256).
        base_momentum: ``τ_base`` (paper: 0.996).
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
        proj_hidden_dim: int = 4096,
        proj_dim: int = 256,
        base_momentum: float = 0.996,
        encoder_kwargs: Optional[dict[str, Any]] = None,
        batched_views: bool = False,
    ) -> None:
        super().__init__()
        self.batched_views = batched_views
        self.encoder = build_timm_encoder(encoder_name, image_size, **(encoder_kwargs or {}))
        d = self.encoder.num_features
        self.projector = ProjectionMLP([d, proj_hidden_dim, proj_dim])
        self.predictor = ProjectionMLP([proj_dim, proj_hidden_dim, proj_dim])
        self.target_encoder = make_ema_copy(self.encoder)
        self.target_projector = make_ema_copy(self.projector)
        self.base_momentum = base_momentum
        self.criterion = BYOLLoss()

    @torch.no_grad()
    def update_momentum(self, step: int, total_steps: int) -> float:
        """EMA step of the target with the cosine schedule; returns the momentum used."""
        m = cosine_momentum(step, total_steps, self.base_momentum)
        ema_update_(self.target_encoder, self.encoder, m)
        ema_update_(self.target_projector, self.projector, m)
        return m

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """Two augmented views ``(batch, 3, H, W)`` -> scalar loss."""
        p1, p2 = forward_views(self._online, view1, view2, batched=self.batched_views)
        with torch.no_grad():
            z1t, z2t = forward_views(self._target, view1, view2, batched=self.batched_views)
        return self.criterion(p1, p2, z1t, z2t)

    def _online(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.projector(self.encoder(x)))

    def _target(self, x: torch.Tensor) -> torch.Tensor:
        return self.target_projector(self.target_encoder(x))
