"""Export of the pre-trained **encoder only**: timm-native safetensors + a small JSON config, and
timm's own Hub folder layout (:func:`timm.models.save_for_hf`) for upload."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import timm
from safetensors.torch import load_file
from timm.models import save_for_hf
from torch import nn

from ..checkpoint_io import save_encoder_safetensors

__all__ = ["ENCODER_WEIGHTS", "ENCODER_CONFIG", "export_encoder", "write_timm_hub_folder"]

ENCODER_WEIGHTS = "encoder.safetensors"
ENCODER_CONFIG = "encoder_config.json"


def export_encoder(
    encoder: nn.Module,
    output_dir: str | os.PathLike,
    *,
    architecture: str,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    method: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``encoder.safetensors`` (keys as in ``timm.create_model(architecture, num_classes=0)``)
    and ``encoder_config.json``; returns the weights path.

    Reload: ``m = timm.create_model(architecture, num_classes=0, **model_args)``;
    ``m.load_state_dict(safetensors.torch.load_file(path))`` (strict).
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_args = {}
    img = getattr(getattr(encoder, "patch_embed", None), "img_size", None)
    if img is not None:
        model_args["img_size"] = int(img[0])
    config = {
        "architecture": architecture,
        "model_args": model_args,
        "num_features": int(getattr(encoder, "num_features", 0)),
        "image_size": int(image_size),
        "mean": [float(x) for x in mean],
        "std": [float(x) for x in std],
        "method": method,
        "timm_version": timm.__version__,
        **(extra or {}),
    }
    weights = out / ENCODER_WEIGHTS
    save_encoder_safetensors(encoder, weights, {"architecture": architecture, "method": method})
    (out / ENCODER_CONFIG).write_text(json.dumps(config, indent=2))
    return weights


def write_timm_hub_folder(export_dir: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Lay an export out in timm's Hub format in ``folder`` with :func:`timm.models.save_for_hf`.

    Writes ``model.safetensors`` (the exported tensors, loaded strictly into the architecture first),
    ``config.json`` (``architecture``, ``num_classes=0``, ``num_features``, ``model_args``,
    ``pretrained_cfg`` with the pre-training mean/std/size) and a copy of ``encoder_config.json``.
    ``timm.create_model("local-dir:" + folder, pretrained=True)`` then rebuilds the encoder.
    """
    src, dst = Path(export_dir), Path(folder)
    config = json.loads((src / ENCODER_CONFIG).read_text())
    encoder = timm.create_model(config["architecture"], pretrained=False, num_classes=0,
                                **config.get("model_args", {}))
    encoder.load_state_dict(load_file(str(src / ENCODER_WEIGHTS)), strict=True)
    size = int(config["image_size"])
    # crop_pct 1.0: pre-training saw whole (resized) frames; tag names our weights, not timm's source ones
    data_config = {"input_size": (3, size, size), "mean": tuple(config["mean"]), "std": tuple(config["std"]),
                   "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "center"}
    # preprocessing via model_config's pretrained_cfg, not data_config=: the same config.json, and it
    # also works with timm releases whose save_for_hf has no data_config argument
    pretrained_cfg = {"tag": f"benthicnet_{config['method']}", **data_config}
    save_for_hf(encoder, str(dst), model_config={"pretrained_cfg": pretrained_cfg}, safe_serialization=True)
    (dst / ENCODER_CONFIG).write_text(json.dumps(config, indent=2))
    return dst
