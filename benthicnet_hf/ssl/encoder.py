"""timm encoders for pre-training and the EMA copy used by BYOL / MoCo v3."""

from __future__ import annotations

import copy
from typing import Any, Optional

import timm
import torch
from torch import nn

__all__ = ["build_timm_encoder", "is_vision_transformer", "make_ema_copy", "ema_update_"]


def is_vision_transformer(model: nn.Module) -> bool:
    """True for timm's ``VisionTransformer`` family (patch embedding + transformer blocks)."""
    return all(hasattr(model, a) for a in ("patch_embed", "blocks", "_pos_embed", "norm"))


def build_timm_encoder(name: str, image_size: Optional[int] = None, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=0)``, sized for ``image_size``.

    ViTs with a fixed input size are rebuilt with ``img_size=image_size`` so that the exported
    state dict (``pos_embed``) matches the pre-training resolution.
    Output: ``encoder(x) -> (batch, encoder.num_features)``.
    """
    try:
        model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    except RuntimeError as err:  # timm raises RuntimeError for unknown names
        raise ValueError(f"unknown timm encoder {name!r}: {err}") from err
    if image_size is not None and is_vision_transformer(model) and "img_size" not in kwargs:
        current = model.patch_embed.img_size
        if current is not None and tuple(current) != (image_size, image_size):
            model = timm.create_model(name, pretrained=False, num_classes=0, img_size=image_size, **kwargs)
    return model


def make_ema_copy(module: nn.Module) -> nn.Module:
    """Frozen deep copy of ``module`` (the EMA target / momentum encoder)."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * online`` for every parameter.

    Buffers (BatchNorm running statistics) are left alone: the target computes its own batch
    statistics in train mode, as in the reference implementations.
    """
    t_params = [p for p in target.parameters()]
    o_params = [p.detach() for p in online.parameters()]
    if len(t_params) != len(o_params):
        raise ValueError(f"EMA target has {len(t_params)} parameters, online has {len(o_params)}")
    torch._foreach_lerp_(t_params, o_params, 1.0 - momentum)
