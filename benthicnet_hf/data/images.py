"""Robust image loading: any PIL mode → 8-bit RGB, with errors that name the row and file.

Conversions (PIL's own ``convert("RGB")`` gets two of them wrong):

- 16-bit greyscale (``I;16``, ``I;16B``, ``I``) and float (``F``): PIL clips to 255 when converting
  to ``L``; we rescale the full 16-bit range (``v / 257``) instead.
- palette (``P``) with transparency and ``RGBA``/``LA``/``PA``: alpha is dropped (the colour
  channels are kept as stored); seafloor photographs carry no meaningful transparency.
- ``CMYK`` and ``YCbCr``/``LAB``/``HSV``: PIL's conversion; ``1`` and ``L``: replicated to 3 channels.
- EXIF orientation is applied so that the pixels are upright.

Decompression bombs (a header claiming more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``, e.g. a
small PNG that says 30000 x 30000) are refused as bad images: PIL only *warns* between one and two
times the limit, and we deliberately turn that warning into an :class:`ImageLoadError` too, so such
a file is a bad row (skipped and reported with ``skip_bad``) and never decoded.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class ImageLoadError(ValueError):
    """An image is missing, unreadable or corrupt. The message names the row and the file."""


def to_rgb(image: Image.Image) -> Image.Image:
    """The image as 8-bit RGB (see the module docstring for the per-mode rules)."""
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT or image.mode == "F":
        arr = np.asarray(image)
        if image.mode == "F":
            arr8 = np.clip(np.rint(arr * 255.0 if arr.max(initial=0) <= 1.0 else arr), 0, 255)
        else:
            # 16-bit data stored in a 32-bit "I" image stays within 0..65535
            arr8 = np.clip(np.rint(arr.astype(np.float64) / 257.0), 0, 255)
        grey = arr8.astype(np.uint8)
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=2), mode="RGB")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA") if image.mode != "RGBA" else image
        return image.convert("RGB")  # drops alpha, keeps stored colour values
    return image.convert("RGB")


def _source_name(source: Any) -> str:
    """The file name of ``source`` for messages (``<bytes>`` for in-memory data)."""
    if isinstance(source, dict):
        return str(source.get("path") or "<bytes>")
    if isinstance(source, (str, Path)):
        return str(source)
    return "<bytes>"


def _open_decoded(source: str | Path | bytes | dict[str, Any] | Image.Image, where: str) -> Image.Image:
    """Open ``source`` and decode its pixels now, so truncated files fail here, not in a worker."""
    if isinstance(source, Image.Image):
        image = source
    else:
        if isinstance(source, dict):
            source = source.get("bytes") or source.get("path")
            if source is None:
                raise ImageLoadError(f"{where}image cell has neither bytes nor path")
        image = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
    image.load()
    return ImageOps.exif_transpose(image)


def load_rgb(source: str | Path | bytes | dict[str, Any] | Image.Image, row: int | None = None) -> Image.Image:
    """Open, fully decode and convert an image to RGB.

    Args:
        source: a path, raw bytes, a ``datasets.Image`` dict ``{"bytes", "path"}`` or a PIL image.
        row: table row, for the error message.

    Raises:
        ImageLoadError: missing file, undecodable data or a decompression bomb, naming ``row`` and
            the file.
    """
    where = f"row {row}: " if row is not None else ""
    name = _source_name(source)
    try:
        with warnings.catch_warnings():
            # PIL only warns below twice its pixel limit: a bomb is a bad file either way
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = _open_decoded(source, where)
    except FileNotFoundError as err:
        raise ImageLoadError(f"{where}image file {name} does not exist") from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageLoadError(f"{where}image {name} is refused as a possible decompression bomb "
                             f"(more than PIL.Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS} pixels): {err}") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if isinstance(err, ImageLoadError):
            raise
        raise ImageLoadError(f"{where}image {name} cannot be decoded: {err}") from err
    return to_rgb(image)


def read_image_bytes(path: Path, row: int | None = None, verify: bool = True) -> bytes:
    """The file's bytes, after checking (when ``verify``) that they decode as an image."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise ImageLoadError(f"row {row}: image file {path} does not exist") from err
    except OSError as err:
        raise ImageLoadError(f"row {row}: image file {path} cannot be read: {err}") from err
    if verify:
        load_rgb({"bytes": data, "path": str(path)}, row=row)
    return data
