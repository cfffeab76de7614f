"""Self-supervised pre-training of timm encoders: SimSiam, BYOL, Barlow Twins, MoCo v3, MAE.

Every method is an ``nn.Module`` with ``.encoder`` (the plain timm model, ``num_classes=0``),
``forward(view1, view2) -> loss`` (MAE: ``forward(images) -> loss``), ``update_momentum(step,
total_steps)`` where an EMA target exists, and ``default_optimizer`` (name, lr per 256 images,
weight decay). ``build_ssl_method("barlow_twins", "resnet50")`` builds one by name.

The two-view methods forward each view separately by default, as the papers do (BatchNorm
statistics per view); ``batched_views=True`` forwards both as one batch (see :mod:`.views`).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from .barlow_twins import BarlowTwins, BarlowTwinsLoss, barlow_twins_loss
from .byol import BYOL, BYOLLoss, byol_loss
from .mae import MAE, mae_loss, mae_target
from .moco_v3 import MoCoV3, MoCoV3Loss, moco_v3_loss
from .simsiam import SimSiam, SimSiamLoss, negative_cosine_similarity

SSL_METHODS: dict[str, type[nn.Module]] = {
    "simsiam": SimSiam,
    "byol": BYOL,
    "barlow_twins": BarlowTwins,
    "mocov3": MoCoV3,
    "mae": MAE,
}

#: Methods trained on one view per image (the others take two augmented views).
SINGLE_VIEW_METHODS = frozenset({"mae"})


def build_ssl_method(name: str, encoder_name: str, *, batched_views: bool = False, **kwargs: Any) -> nn.Module:
    """Instantiate ``SSL_METHODS[name](encoder_name, **kwargs)`` with a clear error for unknown names.

    ``batched_views`` goes to the two-view methods (one forward on both views instead of one per
    view, :mod:`.views`); a single-view method (MAE) refuses ``True``.
    """
    key = name.lower().replace("-", "_")
    key = {"moco_v3": "mocov3", "barlowtwins": "barlow_twins"}.get(key, key)
    if key not in SSL_METHODS:
        raise ValueError(f"unknown SSL method {name!r}; expected one of {sorted(SSL_METHODS)}")
    if key in SINGLE_VIEW_METHODS:
        if batched_views:
            raise ValueError(f"{key} trains on one view per image: batched_views does not apply")
    else:
        kwargs["batched_views"] = batched_views
    cls = SSL_METHODS[key]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "encoder_name"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(f"{key} does not take {unknown}; its arguments are {sorted(accepted)}")
    return cls(encoder_name, **kwargs)


__all__ = [
    "SSL_METHODS", "SINGLE_VIEW_METHODS", "build_ssl_method",
    "SimSiam", "SimSiamLoss", "negative_cosine_similarity",
    "BYOL", "BYOLLoss", "byol_loss",
    "BarlowTwins", "BarlowTwinsLoss", "barlow_twins_loss",
    "MoCoV3", "MoCoV3Loss", "moco_v3_loss",
    "MAE", "mae_loss", "mae_target",
]
