"""On-the-fly image transforms and batching for ``Dataset.with_transform`` and ``DataLoader``.

Both image transforms are timm's (``timm.data.create_transform``) and default to the BenthicNet
mean/std that the model's config and image processor use (ImageNet's statistics on a BenthicNet
model shift every input and change the AP):

- :func:`train_transform`: random resized crop with a benthic-safe scale range, horizontal *and*
  vertical flips (downward-looking imagery has no "up"), colour jitter.
- :class:`PCALighting` / :func:`pca_lighting`: AlexNet-style PCA lighting noise (the BenthicNet
  authors' fine-tuning recipe adds it after the colour jitter; ``train_transform(pca_lighting=0.1)``).
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
           "data_config", "transforms_for", "label_arrays", "hml_transform", "collate_hml",
           "IMAGENET_PCA_EIGVAL", "IMAGENET_PCA_EIGVEC", "pca_lighting", "PCALighting"]

# Labels are image-level: a crop much smaller than a third of the frame often loses the organism or
# the substrate patch the label refers to, so the lower bound is higher than ImageNet's 0.08.
BENTHIC_CROP_SCALE = (0.35, 1.0)

ImageTransform = Callable[[Image.Image], torch.Tensor]


# ImageNet RGB principal components (Krizhevsky et al. 2012, as in fb.resnet.torch): eigenvalues and
# the eigenvectors as columns, for pixel values in [0, 1].
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                       (-0.5808, -0.0045, -0.8140),
                       (-0.5836, -0.6948, 0.4203))


def pca_lighting(image: torch.Tensor, alpha: torch.Tensor, eigval: torch.Tensor, eigvec: torch.Tensor) -> torch.Tensor:
    """AlexNet PCA lighting: ``image + eigvec @ (alpha * eigval)``, one RGB offset for every pixel.

    Args:
        image: ``(3, H, W)`` RGB in [0, 1] (before normalisation).
        alpha: ``(3,)`` the random weights of the three components.
        eigval: ``(3,)`` eigenvalues; eigvec: ``(3, 3)`` eigenvectors as columns.
    """
    offset = eigvec.to(image) @ (alpha.to(image) * eigval.to(image))  # (3,)
    return image + offset.view(3, 1, 1)


class PCALighting(torch.nn.Module):
    """Lighting noise with ``alpha ~ N(0, alphastd^2)`` per component (:func:`pca_lighting`).

    Draws from torch's global generator, so the keyed augmentation of the fine-tuning loader
    (seeded per image) reproduces it. ``alphastd = 0`` is the identity.
    """

    def __init__(self, alphastd: float, eigval: Sequence[float] = IMAGENET_PCA_EIGVAL,
                 eigvec: Sequence[Sequence[float]] = IMAGENET_PCA_EIGVEC) -> None:
        super().__init__()
        if alphastd < 0:
            raise ValueError(f"PCALighting: alphastd must be >= 0, got {alphastd}")
        self.alphastd = float(alphastd)
        self.eigval = torch.tensor(eigval, dtype=torch.float32)
        self.eigvec = torch.tensor(eigvec, dtype=torch.float32)
        if self.eigval.shape != (3,) or self.eigvec.shape != (3, 3):
            raise ValueError(f"PCALighting: eigval must be (3,) and eigvec (3, 3), got {tuple(self.eigval.shape)} "
                             f"and {tuple(self.eigvec.shape)}")

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.alphastd == 0:
            return image
        return pca_lighting(image, torch.randn(3) * self.alphastd, self.eigval, self.eigvec)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alphastd={self.alphastd})"


def train_transform(image_size: int, mean: Sequence[float] = BENTHICNET_MEAN, std: Sequence[float] = BENTHICNET_STD,
                    scale: tuple[float, float] = BENTHIC_CROP_SCALE, ratio: tuple[float, float] = (3 / 4, 4 / 3),
                    hflip: float = 0.5, vflip: float = 0.5, color_jitter: float = 0.4,
                    interpolation: str = "bilinear", pca_lighting: float = 0.0) -> ImageTransform:
    """PIL RGB image → ``(3, image_size, image_size)`` float32 augmented, normalised tensor.

    timm's train transform: ``RandomResizedCropAndInterpolation(scale, ratio)``, flips with
    probabilities ``hflip``/``vflip``, ``ColorJitter(color_jitter)`` on brightness, contrast and
    saturation (none when 0), ``ToTensor``, then :class:`PCALighting` ``(pca_lighting)`` when > 0
    (on [0, 1] pixels, as the authors' recipe), ``Normalize(mean, std)``.
    """
    tf = create_transform(input_size=(3, image_size, image_size), is_training=True, scale=tuple(scale),
                          ratio=tuple(ratio), hflip=hflip, vflip=vflip,
                          color_jitter=color_jitter if color_jitter > 0 else None,
                          interpolation=interpolation, mean=tuple(mean), std=tuple(std))
    if pca_lighting > 0:
        steps = list(tf.transforms)
        at = next(i for i, t in enumerate(steps) if type(t).__name__ == "Normalize")
        tf.transforms = steps[:at] + [PCALighting(pca_lighting)] + steps[at:]
    return tf


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
