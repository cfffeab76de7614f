"""MoCo v3 (Chen, Xie & He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers").

``ctr(q, k) = 2τ · CE(q̂ k̂ᵀ / τ, labels)`` with ``q̂, k̂`` L2-normalised, keys ``k`` from the
momentum encoder gathered over all processes (the negatives), and ``labels_i = rank * batch + i``
(the positive). Total: ``ctr(q1, k2) + ctr(q2, k1)``. Defaults for ViTs: ``τ = 0.2``,
momentum 0.99 following the cosine schedule to 1; projector 3 layers (4096, 256), predictor
2 layers, both ending in BatchNorm without affine.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import gather_no_grad, rank
from .encoder import build_timm_encoder, ema_update_, make_ema_copy
from .projectors import ProjectionMLP
from .schedules import cosine_momentum
from .views import forward_views

__all__ = ["moco_v3_loss", "MoCoV3Loss", "MoCoV3"]


def moco_v3_loss(q: torch.Tensor, k: torch.Tensor, temperature: float = 0.2, *, gather: bool = True) -> torch.Tensor:
    """One direction of the MoCo v3 InfoNCE loss, ``2τ · CE(q̂ k̂ᵀ / τ)``.

    Args:
        q: queries ``(batch, dim)`` from the online branch.
        k: keys ``(batch, dim)`` from the momentum branch (no gradient flows into them).
        temperature: ``τ``.
        gather: use the keys of all processes as negatives.

    Returns:
        scalar.
    """
    if q.shape != k.shape or q.ndim != 2:
        raise ValueError(f"expected two (batch, dim) tensors of equal shape, got {tuple(q.shape)} and {tuple(k.shape)}")
    dtype = torch.promote_types(q.dtype, torch.float32)
    q = F.normalize(q.to(dtype), dim=1)
    k = F.normalize(k.detach().to(dtype), dim=1)
    offset = 0
    if gather:
        k = gather_no_grad(k)
        offset = rank() * q.shape[0]
    logits = q @ k.T / temperature
    labels = torch.arange(q.shape[0], device=q.device) + offset
    return 2.0 * temperature * F.cross_entropy(logits, labels)


class MoCoV3Loss(nn.Module):
    """Symmetric MoCo v3 loss ``moco_v3_loss(q1, k2) + moco_v3_loss(q2, k1)``.

    Example:
        >>> loss = MoCoV3Loss(temperature=0.2)(q1, q2, k1, k2)  # (batch, dim) each
    """

    def __init__(self, temperature: float = 0.2, gather: bool = True) -> None:
        super().__init__()
        self.temperature = temperature
        self.gather = gather

    def forward(self, q1: torch.Tensor, q2: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor) -> torch.Tensor:  # noqa: D102
        t, g = self.temperature, self.gather
        return moco_v3_loss(q1, k2, t, gather=g) + moco_v3_loss(q2, k1, t, gather=g)


class MoCoV3(nn.Module):
    """Online encoder + projector + predictor; momentum encoder + projector (ResNet or ViT).

    Args:
        encoder_name: timm model name (paper: ``vit_base_patch16_224``).
        proj_hidden_dim, proj_dim: MLP widths (paper: 4096, 256).
        temperature: ``τ`` (0.2 for ViT; the paper uses 1.0 for ResNet-50).
        base_momentum: start of the cosine momentum schedule (0.99).
        freeze_patch_embed: keep a ViT's random patch projection fixed (the paper's stability trick).
        batched_views: forward both views as one batch of ``2B`` (faster on a GPU, but the BatchNorm
            layers then use statistics over both views: see :mod:`.views`); default: one forward per view
            as in the paper.
    """

    default_optimizer = {"name": "adamw", "lr": 1.5e-4, "weight_decay": 0.1}

    def __init__(
        self,
        encoder_name: str = "vit_base_patch16_224",
        *,
        image_size: Optional[int] = None,
        proj_hidden_dim: int = 4096,
        proj_dim: int = 256,
        temperature: float = 0.2,
        base_momentum: float = 0.99,
        freeze_patch_embed: bool = False,
        encoder_kwargs: Optional[dict[str, Any]] = None,
        batched_views: bool = False,
    ) -> None:
        super().__init__()
        self.batched_views = batched_views
        self.encoder = build_timm_encoder(encoder_name, image_size, **(encoder_kwargs or {}))
        if freeze_patch_embed:
            if not hasattr(self.encoder, "patch_embed"):
                raise ValueError(f"freeze_patch_embed needs a ViT encoder, {encoder_name!r} has no patch_embed")
            self.encoder.patch_embed.requires_grad_(False)
        d = self.encoder.num_features
        self.projector = ProjectionMLP([d, proj_hidden_dim, proj_hidden_dim, proj_dim], last_batch_norm=True, last_batch_norm_affine=False)
        self.predictor = ProjectionMLP([proj_dim, proj_hidden_dim, proj_dim], last_batch_norm=True, last_batch_norm_affine=False)
        self.momentum_encoder = make_ema_copy(self.encoder)
        self.momentum_projector = make_ema_copy(self.projector)
        self.base_momentum = base_momentum
        self.criterion = MoCoV3Loss(temperature)

    @torch.no_grad()
    def update_momentum(self, step: int, total_steps: int) -> float:
        """EMA step of the momentum branch with the cosine schedule; returns the momentum used."""
        m = cosine_momentum(step, total_steps, self.base_momentum)
        ema_update_(self.momentum_encoder, self.encoder, m)
        ema_update_(self.momentum_projector, self.projector, m)
        return m

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """Two augmented views ``(batch, 3, H, W)`` -> scalar loss."""
        q1, q2 = forward_views(self._online, view1, view2, batched=self.batched_views)
        with torch.no_grad():
            k1, k2 = forward_views(self._momentum, view1, view2, batched=self.batched_views)
        return self.criterion(q1, q2, k1, k2)

    def _online(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.projector(self.encoder(x)))

    def _momentum(self, x: torch.Tensor) -> torch.Tensor:
        return self.momentum_projector(self.momentum_encoder(x))
