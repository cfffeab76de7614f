"""The image processor saved with every BenthicNet model: timm's eval transform as a transformers processor.

timm evaluates with ``Resize(int(image_size / crop_pct), bicubic)`` on the shortest edge, then
``CenterCrop(image_size)``, ``ToTensor`` and ``Normalize(mean, std)``. ``ConvNextImageProcessor`` with
``size={"shortest_edge": image_size}``, ``crop_pct`` and ``resample=3`` (bicubic) does exactly that for
``image_size < 384`` (from 384 on it warps to a square without cropping, so it is refused here).

Remote-code safe: imports only installed packages.
"""

from __future__ import annotations

from typing import Any

from transformers import ConvNextImageProcessor

#: PIL.Image.BICUBIC
BICUBIC = 3


def make_image_processor(config: Any) -> ConvNextImageProcessor:
    """A ``ConvNextImageProcessor`` reproducing timm's eval transform for ``config``.

    Args:
        config: a :class:`BenthicNetConfig` (reads ``image_size``, ``crop_pct``, ``image_mean``,
            ``image_std``).

    Returns:
        the processor; ``processor(images, return_tensors="pt")["pixel_values"]`` is
        ``(batch, 3, image_size, image_size)``.
    """
    size = int(config.image_size)
    if size >= 384:
        raise ValueError(
            f"image_size={size}: ConvNextImageProcessor resizes images of 384 px and more without the "
            "centre crop of timm's eval transform; use an image_size below 384"
        )
    return ConvNextImageProcessor(
        size={"shortest_edge": size},
        crop_pct=float(config.crop_pct),
        resample=BICUBIC,
        do_resize=True,
        do_rescale=True,
        do_normalize=True,
        image_mean=list(config.image_mean),
        image_std=list(config.image_std),
    )
