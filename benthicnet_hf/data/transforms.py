"""On-the-fly image transforms and batching for ``Dataset.with_transform`` and ``DataLoader``.

- :func:`train_transform`: random resized crop with a benthic-safe scale range, horizontal *and*
  vertical flips (downward-looking imagery has no "up"), colour jitter.
- :func:`eval_transform`: exactly timm's eval transform, which is what the model's image processor
  reproduces: resize the shorter side to ``floor(image_size / crop_pct)``, centre crop, normalise.
- :func:`hml_transform`: batch → ``pixel_values`` ``(B, 3, H, W)`` float32, ``labels`` and
  ``label_mask`` ``(B, N)`` float32, the per-head vectors concatenated in hierarchy order.
- :func:`collate_hml`: a ``DataLoader`` collate function for those rows.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from ..hierarchy import Hierarchy
from .images import load_rgb

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BENTHICNET_MEAN = (0.359, 0.413, 0.386)
BENTHICNET_STD = (0.219, 0.215, 0.209)
# Labels are image-level: a crop much smaller than a third of the frame often loses the organism or
# the substrate patch the label refers to, so the lower bound is higher than ImageNet's 0.08.
BENTHIC_CROP_SCALE = (0.35, 1.0)
_INTERP = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
           "nearest": T.InterpolationMode.NEAREST}


def train_transform(image_size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                    scale: tuple[float, float] = BENTHIC_CROP_SCALE, ratio: tuple[float, float] = (3 / 4, 4 / 3),
                    hflip: float = 0.5, vflip: float = 0.5, color_jitter: float = 0.4,
                    interpolation: str = "bilinear") -> Callable[[Image.Image], torch.Tensor]:
    """PIL RGB image → ``(3, image_size, image_size)`` float32 augmented, normalised tensor."""
    ops: list[Any] = [T.RandomResizedCrop(image_size, scale=scale, ratio=ratio, interpolation=_INTERP[interpolation])]
    if hflip > 0:
        ops.append(T.RandomHorizontalFlip(hflip))
    if vflip > 0:
        ops.append(T.RandomVerticalFlip(vflip))
    if color_jitter > 0:
        ops.append(T.ColorJitter(color_jitter, color_jitter, color_jitter))
    ops += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(ops)


def eval_transform(image_size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                   crop_pct: float = 0.875, interpolation: str = "bicubic") -> Callable[[Image.Image], torch.Tensor]:
    """timm's eval transform: PIL RGB → ``(3, image_size, image_size)`` float32.

    Shorter side resized to ``floor(image_size / crop_pct)``, centre crop, normalise.
    """
    return T.Compose([
        T.Resize(math.floor(image_size / crop_pct), interpolation=_INTERP[interpolation]),
        T.CenterCrop(image_size), T.ToTensor(), T.Normalize(mean, std),
    ])


def transforms_from_data_config(data_config: Mapping[str, Any], train: bool, **train_kwargs: Any
                                ) -> Callable[[Image.Image], torch.Tensor]:
    """Transforms from timm's ``resolve_data_config(model=...)`` dict (input_size, mean, std, crop_pct)."""
    size = int(data_config["input_size"][-1])
    mean, std = tuple(data_config["mean"]), tuple(data_config["std"])
    if train:
        return train_transform(size, mean, std, **train_kwargs)
    return eval_transform(size, mean, std, crop_pct=float(data_config.get("crop_pct", 0.875)),
                          interpolation=str(data_config.get("interpolation", "bicubic")))


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
