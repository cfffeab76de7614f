"""SimSiam (Chen & He 2021, "Exploring Simple Siamese Representation Learning").

Loss: ``L = 1/2 D(p1, sg(z2)) + 1/2 D(p2, sg(z1))`` with ``D(p, z) = -mean_b cos(p_b, z_b)``,
``z = projector(encoder(x))``, ``p = predictor(z)`` and ``sg`` the stop-gradient.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .encoder import build_timm_encoder
from .projectors import ProjectionMLP
from .views import forward_views

__all__ = ["negative_cosine_similarity", "SimSiamLoss", "SimSiam"]


def negative_cosine_similarity(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``-mean_b cos(p_b, z_b)``; no stop-gradient here (callers detach the target).

    Args:
        p, z: ``(batch, dim)``.

    Returns:
        scalar.
    """
    if p.shape != z.shape or p.ndim != 2:
        raise ValueError(f"expected two (batch, dim) tensors of equal shape, got {tuple(p.shape)} and {tuple(z.shape)}")
    return -F.cosine_similarity(p, z, dim=1).mean()


class SimSiamLoss(nn.Module):
    """Symmetric SimSiam loss with stop-gradient on the projections.

    Example:
        >>> loss_fn = SimSiamLoss()
        >>> loss = loss_fn(p1, p2, z1, z2)  # all (batch, dim)
    """

    def forward(self, p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """``p*``: predictions, ``z*``: projections, each ``(batch, dim)`` -> scalar in [-1, 1]."""
        return 0.5 * (negative_cosine_similarity(p1, z2.detach()) + negative_cosine_similarity(p2, z1.detach()))


class SimSiam(nn.Module):
    """Encoder + 3-layer projector (BN on the output) + 2-layer bottleneck predictor.

    Args:
        encoder_name: timm model name (built with ``num_classes=0``).
        proj_hidden_dim, proj_dim: projector widths (paper: 2048, 2048).
        pred_hidden_dim: predictor bottleneck (paper: 512).
        batched_views: forward both views as one batch of ``2B`` (faster on a GPU, but the BatchNorm
            layers then use statistics over both views: see :mod:`.views`); default: one forward per view
            as in the paper.
    """

    default_optimizer = {"name": "lars", "lr": 0.05, "weight_decay": 1e-4}

    def __init__(
        self,
        encoder_name: str = "resnet50",
        *,
        image_size: Optional[int] = None,
        proj_hidden_dim: int = 2048,
        proj_dim: int = 2048,
        pred_hidden_dim: int = 512,
        encoder_kwargs: Optional[dict[str, Any]] = None,
        batched_views: bool = False,
    ) -> None:
        super().__init__()
        self.batched_views = batched_views
        self.encoder = build_timm_encoder(encoder_name, image_size, **(encoder_kwargs or {}))
        d = self.encoder.num_features
        self.projector = ProjectionMLP([d, proj_hidden_dim, proj_hidden_dim, proj_dim], last_batch_norm=True)
        self.predictor = ProjectionMLP([proj_dim, pred_hidden_dim, proj_dim])
        self.criterion = SimSiamLoss()

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """Two augmented views ``(batch, 3, H, W)`` -> scalar loss."""
        z1, z2 = forward_views(self._project, view1, view2, batched=self.batched_views)
        p1, p2 = forward_views(self.predictor, z1, z2, batched=self.batched_views)
        return self.criterion(p1, p2, z1, z2)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.encoder(x))
