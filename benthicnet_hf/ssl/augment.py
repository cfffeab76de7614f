"""Augmentations for nadir (top-down) seafloor imagery.

A seafloor photographed from above has no "up": horizontal flips, vertical flips and rotations
by multiples of 90° all give plausible images, so all three are used (unlike ImageNet pipelines,
which only flip horizontally). Crop scales are configurable (BenthicNet: 0.1–1). The colour
pipeline follows BYOL (asymmetric blur/solarisation between the two views).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from PIL import Image
from torchvision.transforms import v2

from ..configuration_benthicnet import BENTHICNET_MEAN, BENTHICNET_STD

__all__ = ["BENTHICNET_MEAN", "BENTHICNET_STD", "RandomRotate90", "view_transform", "TwoViewTransform", "SingleViewTransform"]


class RandomRotate90(torch.nn.Module):
    """Rotate a ``(..., H, W)`` tensor by ``k * 90°`` with ``k`` uniform in {0, 1, 2, 3}."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        k = int(torch.randint(0, 4, ()).item())
        return torch.rot90(x, k, dims=(-2, -1)) if k else x


def view_transform(
    image_size: int,
    *,
    scale: Sequence[float] = (0.1, 1.0),
    blur_prob: float = 0.5,
    solarize_prob: float = 0.0,
    color_jitter: float = 0.4,
    color_prob: float = 0.8,
    grayscale_prob: float = 0.2,
    mean: Sequence[float] = BENTHICNET_MEAN,
    std: Sequence[float] = BENTHICNET_STD,
) -> v2.Compose:
    """One stochastic view: PIL image -> float tensor ``(3, image_size, image_size)``, normalised."""
    if not (0 < scale[0] <= scale[1] <= 1):
        raise ValueError(f"crop scale must satisfy 0 < min <= max <= 1, got {tuple(scale)}")
    steps: list[torch.nn.Module] = [
        v2.ToImage(),
        v2.RandomResizedCrop(image_size, scale=tuple(scale), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        RandomRotate90(),
    ]
    if color_jitter > 0 and color_prob > 0:
        cj = color_jitter
        steps.append(v2.RandomApply([v2.ColorJitter(cj, cj, cj / 2, min(0.5, cj / 4))], p=color_prob))
    if grayscale_prob > 0:
        steps.append(v2.RandomGrayscale(grayscale_prob))
    if blur_prob > 0:
        kernel = max(3, (image_size // 10) | 1)  # ~10% of the image, odd
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=blur_prob))
    if solarize_prob > 0:
        steps.append(v2.RandomSolarize(threshold=128, p=solarize_prob))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


@dataclass
class TwoViewTransform:
    """Two differently augmented views of one image (BYOL's asymmetric blur/solarisation).

    Call: PIL image -> ``(view1, view2)``, each ``(3, image_size, image_size)``.
    """

    image_size: int
    scale: Sequence[float] = (0.1, 1.0)
    mean: Sequence[float] = BENTHICNET_MEAN
    std: Sequence[float] = BENTHICNET_STD
    views: list = field(init=False, repr=False)

    def __post_init__(self) -> None:
        common = dict(scale=self.scale, mean=self.mean, std=self.std)
        self.views = [view_transform(self.image_size, blur_prob=1.0, solarize_prob=0.0, **common),
                      view_transform(self.image_size, blur_prob=0.1, solarize_prob=0.2, **common)]

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        return self.views[0](image), self.views[1](image)


@dataclass
class SingleViewTransform:
    """MAE's light augmentation: crop (scale 0.2–1), flips, 90° rotations; no colour changes.

    Call: PIL image -> ``(3, image_size, image_size)``.
    """

    image_size: int
    scale: Sequence[float] = (0.2, 1.0)
    mean: Sequence[float] = BENTHICNET_MEAN
    std: Sequence[float] = BENTHICNET_STD
    view: v2.Compose = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.view = view_transform(self.image_size, scale=self.scale, blur_prob=0.0, color_jitter=0.0,
                                   grayscale_prob=0.0, mean=self.mean, std=self.std)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.view(image)
