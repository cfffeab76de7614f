"""The image processor saved with every BenthicNet model: timm's eval transform as a transformers processor.

timm evaluates with ``Resize(floor(image_size / crop_pct), bicubic)`` on the shortest edge, then
``CenterCrop(image_size)``, ``ToTensor`` and ``Normalize(mean, std)``. :class:`BenthicNetImageProcessor`
is ``BitImageProcessor`` (resize the shortest edge, then centre-crop) with torchvision's crop
rounding: transformers' backend places the crop at ``floor((h - crop) / 2)``, torchvision (and so
timm) at ``round((h - crop) / 2)``, a one-pixel shift on images whose resized side leaves an odd
margin. (``ConvNextImageProcessor``, used before, has that shift too and warps images of 384 px and
more to a square without cropping.) Any ``image_size`` works.

Remote-code safe: imports only installed packages.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import BitImageProcessor

#: PIL.Image.BICUBIC
BICUBIC = 3


class BenthicNetImageProcessor(BitImageProcessor):
    """``BitImageProcessor`` whose centre crop is placed as torchvision's ``CenterCrop`` places it."""

    def center_crop(self, image: Any, size: Any, **kwargs: Any) -> Any:
        """Crop ``(..., H, W)`` tensors to ``size`` at ``round((H - h) / 2), round((W - w) / 2)``."""
        from torchvision.transforms.v2 import functional as tvF

        height, width = image.shape[-2:]
        if size.height > height or size.width > width:  # padding: the parent's (torchvision's) rule
            return super().center_crop(image, size, **kwargs)
        top = int(round((height - size.height) / 2.0))
        left = int(round((width - size.width) / 2.0))
        return tvF.crop(image, top, left, size.height, size.width)


def eval_data_config(config: Any) -> dict[str, Any]:
    """The processor's preprocessing as timm's data config (``input_size``, ``interpolation``,
    ``crop_pct``, ``crop_mode``, ``mean``, ``std``), for ``timm.data.create_transform`` and timm's
    ``pretrained_cfg``; ``config`` is a :class:`BenthicNetConfig`."""
    size = int(config.image_size)
    return {"input_size": (3, size, size), "interpolation": "bicubic", "crop_pct": float(config.crop_pct),
            "crop_mode": "center", "mean": tuple(config.image_mean), "std": tuple(config.image_std)}


def make_image_processor(config: Any) -> BenthicNetImageProcessor:
    """A :class:`BenthicNetImageProcessor` reproducing timm's eval transform for ``config``.

    Args:
        config: a :class:`BenthicNetConfig` (reads ``image_size``, ``crop_pct``, ``image_mean``,
            ``image_std``).

    Returns:
        the processor; ``processor(images, return_tensors="pt")["pixel_values"]`` is
        ``(batch, 3, image_size, image_size)``.
    """
    size = int(config.image_size)
    return BenthicNetImageProcessor(
        size={"shortest_edge": math.floor(size / float(config.crop_pct))},  # timm's scale_size
        crop_size={"height": size, "width": size},
        resample=BICUBIC,
        do_resize=True,
        do_center_crop=True,
        do_rescale=True,
        do_normalize=True,
        do_convert_rgb=True,
        image_mean=list(config.image_mean),
        image_std=list(config.image_std),
    )
