"""On-the-fly image transforms and batching for ``Dataset.with_transform`` and ``DataLoader``.

Both image transforms are timm's (``timm.data.create_transform``) and default to the BenthicNet
mean/std that the model's config and image processor use (ImageNet's statistics on a BenthicNet
model shift every input and change the AP):

- :func:`train_transform`: random resized crop with a benthic-safe scale range, horizontal *and*
  vertical flips (downward-looking imagery has no "up"), colour jitter.
- :func:`eval_transform`: timm's eval transform, which the model's image processor reproduces:
  resize the shorter side to ``floor(image_size / crop_pct)``, centre crop, normalise.
- :func:`data_config` / :func:`transforms_for`: both transforms from a model's or config's own
  preprocessing (timm's ``resolve_data_config`` keys).
- :func:`hml_transform`: batch → ``pixel_values`` ``(B, 3, H, W)`` float32, ``labels`` and
  ``label_mask`` ``(B, N)`` float32, the per-head vectors concatenated in hierarchy order.
- :func:`collate_hml`: a ``DataLoader`` collate function for those rows.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config, resolve_model_data_config

from ..configuration_benthicnet import BENTHICNET_MEAN, BENTHICNET_STD
from ..hierarchy import Hierarchy
from ..image_processing import eval_data_config
from .images import load_rgb

__all__ = ["BENTHICNET_MEAN", "BENTHICNET_STD", "BENTHIC_CROP_SCALE", "train_transform", "eval_transform",
           "data_config", "transforms_for", "label_arrays", "hml_transform", "collate_hml"]

# Labels are image-level: a crop much smaller than a third of the frame often loses the organism or
# the substrate patch the label refers to, so the lower bound is higher than ImageNet's 0.08.
BENTHIC_CROP_SCALE = (0.35, 1.0)

ImageTransform = Callable[[Image.Image], torch.Tensor]


def train_transform(image_size: int, mean: Sequence[float] = BENTHICNET_MEAN, std: Sequence[float] = BENTHICNET_STD,
                    scale: tuple[float, float] = BENTHIC_CROP_SCALE, ratio: tuple[float, float] = (3 / 4, 4 / 3),
                    hflip: float = 0.5, vflip: float = 0.5, color_jitter: float = 0.4,
                    interpolation: str = "bilinear") -> ImageTransform:
    """PIL RGB image → ``(3, image_size, image_size)`` float32 augmented, normalised tensor.

    timm's train transform: ``RandomResizedCropAndInterpolation(scale, ratio)``, flips with
    probabilities ``hflip``/``vflip``, ``ColorJitter(color_jitter)`` on brightness, contrast and
    saturation (none when 0), ``ToTensor``, ``Normalize(mean, std)``.
    """
    return create_transform(input_size=(3, image_size, image_size), is_training=True, scale=tuple(scale),
                            ratio=tuple(ratio), hflip=hflip, vflip=vflip,
                            color_jitter=color_jitter if color_jitter > 0 else None,
                            interpolation=interpolation, mean=tuple(mean), std=tuple(std))


def eval_transform(image_size: int, mean: Sequence[float] = BENTHICNET_MEAN, std: Sequence[float] = BENTHICNET_STD,
                   crop_pct: float = 0.875, interpolation: str = "bicubic") -> ImageTransform:
    """timm's eval transform: PIL RGB → ``(3, image_size, image_size)`` float32.

    Shorter side resized to ``floor(image_size / crop_pct)``, centre crop, normalise.
    """
    return create_transform(input_size=(3, image_size, image_size), is_training=False, crop_pct=crop_pct,
                            crop_mode="center", interpolation=interpolation, mean=tuple(mean), std=tuple(std))


def data_config(source: Any) -> dict[str, Any]:
    """timm's data config (``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct``, ``crop_mode``).

    Args:
        source: a ``BenthicNetConfig``, a model with such a ``.config`` (its processor's
            preprocessing), or a timm model (its ``pretrained_cfg``).
    """
    config = getattr(source, "config", source)
    if hasattr(config, "image_mean") and hasattr(config, "image_size"):
        return resolve_data_config(eval_data_config(config))
    if hasattr(source, "pretrained_cfg"):
        return resolve_model_data_config(source)
    raise TypeError(f"{type(source).__name__} has neither a BenthicNet config (image_size, image_mean, ...) "
                    "nor a timm pretrained_cfg")


def transforms_for(source: Any, **train_kwargs: Any) -> tuple[ImageTransform, ImageTransform]:
    """``(train, eval)`` transforms with ``source``'s size, mean/std, crop_pct (see :func:`data_config`).

    ``train_kwargs`` go to :func:`train_transform` (``scale``, ``hflip``, ``vflip``, ...).
    """
    cfg = data_config(source)
    size = int(cfg["input_size"][-1])
    return (train_transform(size, cfg["mean"], cfg["std"], **train_kwargs),
            eval_transform(size, cfg["mean"], cfg["std"], crop_pct=float(cfg["crop_pct"]),
                           interpolation=str(cfg["interpolation"])))


def label_arrays(batch: Mapping[str, Sequence[Any]], hierarchy: Hierarchy) -> tuple[np.ndarray, np.ndarray]:
    """``(B, N)`` float32 labels and mask from the per-head ``{head}_target``/``{head}_mask`` columns."""
    labels = np.concatenate([np.asarray(batch[f"{h}_target"], dtype=np.float32).reshape(-1, len(hd.nodes))
                             for h, hd in zip(hierarchy.head_names, hierarchy.heads)], axis=1)
    mask = np.concatenate([np.asarray(batch[f"{h}_mask"], dtype=np.float32).reshape(-1, len(hd.nodes))
                           for h, hd in zip(hierarchy.head_names, hierarchy.heads)], axis=1)
    return labels, mask


def hml_transform(hierarchy: Hierarchy, image_transform: Callable[[Image.Image], torch.Tensor],
                  image_column: str = "image", keep_columns: Sequence[str] = ()
                  ) -> Callable[[dict[str, list[Any]]], dict[str, Any]]:
    """A batch transform for ``Dataset.with_transform`` / ``set_transform``.

    Returns a callable mapping a batch of rows to ``pixel_values`` ``(B, 3, H, W)`` float32,
    ``labels`` ``(B, N)`` float32 and ``label_mask`` ``(B, N)`` float32 (1 = known), plus the
    ``keep_columns`` unchanged.
    """
    def transform(batch: dict[str, list[Any]]) -> dict[str, Any]:
        images = [image_transform(load_rgb(img)) for img in batch[image_column]]
        labels, mask = label_arrays(batch, hierarchy)
        out: dict[str, Any] = {
            "pixel_values": torch.stack(images),
            "labels": torch.from_numpy(labels),
            "label_mask": torch.from_numpy(mask),
        }
        for col in keep_columns:
            out[col] = batch[col]
        return out

    return transform


def collate_hml(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Rows from :func:`hml_transform` → ``pixel_values (B,3,H,W)``, ``labels (B,N)``, ``label_mask (B,N)``.

    Tensor fields are stacked; other fields become lists.
    """
    if not batch:
        raise ValueError("collate_hml got an empty batch")
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [row[key] for row in batch]
        if isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(values[0], np.ndarray):
            out[key] = torch.from_numpy(np.stack(values))
        else:
            out[key] = values
    return out
