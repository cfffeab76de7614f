"""Export of the pre-trained **encoder only**: timm-native safetensors + a small JSON config."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import timm
from safetensors.torch import save_file
from torch import nn

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
    try:  # the shared converter, when present, owns the on-disk format
        from benthicnet_hf.conversion import save_encoder_safetensors  # type: ignore[attr-defined]
    except ImportError:
        state = {k: v.detach().cpu().contiguous().clone() for k, v in encoder.state_dict().items()}
        save_file(state, str(weights), metadata={"format": "timm", "architecture": architecture, "method": method})
    else:
        save_encoder_safetensors(encoder, weights, {"architecture": architecture, "method": method})
    (out / ENCODER_CONFIG).write_text(json.dumps(config, indent=2))
    return weights


def write_timm_hub_folder(export_dir: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Lay an export out as timm's Hub format in ``folder``: ``model.safetensors`` (the same tensors),
    ``config.json`` (``architecture``, ``num_classes=0``, ``num_features``, ``model_args``,
    ``pretrained_cfg`` with the pre-training mean/std/size) and ``encoder_config.json``.
    ``timm.create_model("local-dir:" + folder, pretrained=True)`` then rebuilds the encoder.
    """
    src, dst = Path(export_dir), Path(folder)
    dst.mkdir(parents=True, exist_ok=True)
    config = json.loads((src / ENCODER_CONFIG).read_text())
    size = config["image_size"]
    pretrained_cfg = {
        "input_size": [3, size, size], "mean": config["mean"], "std": config["std"], "num_classes": 0,
        "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "center",
    }
    timm_config = {
        "architecture": config["architecture"], "num_classes": 0, "num_features": config["num_features"],
        "model_args": config.get("model_args", {}), "pretrained_cfg": pretrained_cfg,
    }
    (dst / "config.json").write_text(json.dumps(timm_config, indent=2))
    (dst / ENCODER_CONFIG).write_text(json.dumps(config, indent=2))
    shutil.copyfile(src / ENCODER_WEIGHTS, dst / "model.safetensors")
    return dst
