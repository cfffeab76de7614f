"""The image encoder of a BenthicNet model: a timm model built from the config (never downloads),
and the checks of the images fed to it.

Remote-code safe: imports only installed packages.
"""

from __future__ import annotations

import difflib
from typing import Any

import timm
import torch
from torch import Tensor, nn


def create_encoder(config: Any) -> nn.Module:
    """The timm encoder of ``config``: ``pretrained=False``, ``num_classes=0`` (pooled features)."""
    name = config.encoder_name
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; close matches: {close}" if close else ""
        raise ValueError(f"unknown timm encoder_name {name!r}{hint}")
    return timm.create_model(name, pretrained=False, num_classes=0, **config.encoder_kwargs)


def checked_pixel_values(pixel_values: Tensor, config: Any, backbone: nn.Module) -> Tensor:
    """The image batch ``(batch, C, H, W)``, checked: clear errors for a wrong shape or dtype.

    Integer pixels (uint8 0-255) mean the image processor was skipped: an error. Floating-point
    pixels of another dtype than the encoder's weights (float64 from numpy, typically) are cast to
    it, which loses nothing the encoder would use.
    """
    in_chans = int(config.encoder_kwargs.get("in_chans", 3))
    if not isinstance(pixel_values, Tensor) or pixel_values.ndim != 4 or pixel_values.shape[1] != in_chans:
        got = tuple(pixel_values.shape) if isinstance(pixel_values, Tensor) else type(pixel_values).__name__
        raise ValueError(
            f"pixel_values must have shape (batch, {in_chans}, height, width), got {got}"
        )
    if not pixel_values.is_floating_point():
        hint = (" (raw 0-255 pixels: the image processor was skipped; pass images through "
                "AutoImageProcessor.from_pretrained(model_dir)(images, return_tensors='pt'), which scales "
                "and normalises them)") if pixel_values.dtype == torch.uint8 else ""
        raise ValueError(f"pixel_values must be a floating-point tensor of normalised images, got "
                         f"dtype {pixel_values.dtype}{hint}")
    weight_dtype = next(backbone.parameters()).dtype
    if pixel_values.dtype != weight_dtype and weight_dtype.is_floating_point:
        pixel_values = pixel_values.to(weight_dtype)
    patch_embed = getattr(backbone, "patch_embed", None)
    fixed = getattr(patch_embed, "img_size", None)
    strict = getattr(patch_embed, "strict_img_size", False)  # timm ViTs without dynamic_img_size
    if fixed is not None and strict and tuple(pixel_values.shape[-2:]) != tuple(fixed):
        raise ValueError(
            f"encoder {config.encoder_name!r} takes {tuple(fixed)} images, got pixel_values of "
            f"shape {tuple(pixel_values.shape)} (set encoder_kwargs img_size or dynamic_img_size)"
        )
    return pixel_values
