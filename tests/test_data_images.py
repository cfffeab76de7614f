"""Image loading: every PIL mode to 8-bit RGB against numpy references; clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from benthicnet_hf.data.images import ImageLoadError, load_rgb, read_image_bytes


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_16bit_png_uses_full_range(tmp_path):
    values = np.array([[0, 257, 1000], [32768, 65000, 65535]], dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)  # written as a 16-bit greyscale PNG
    assert Image.open(path).mode in ("I;16", "I")
    rgb = np.asarray(load_rgb(path))
    expected = np.rint(values / 257.0).astype(np.uint8)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], expected)


def test_greyscale_rgba_palette(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    out = np.asarray(load_rgb(_png_bytes(Image.fromarray(grey, mode="L"))))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))

    rgba = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    out = np.asarray(load_rgb(_png_bytes(Image.fromarray(rgba, mode="RGBA"))))
    np.testing.assert_array_equal(out, rgba[..., :3])

    palette = rng.integers(0, 256, (4, 3), dtype=np.uint8)
    idx = rng.integers(0, 4, (5, 7), dtype=np.uint8)
    p = Image.fromarray(idx, mode="P")
    p.putpalette(palette.reshape(-1).tolist())
    p.info["transparency"] = 0
    out = np.asarray(load_rgb(_png_bytes(p)))
    np.testing.assert_array_equal(out, palette[idx])


def test_cmyk_jpeg_matches_formula(tmp_path):
    cmyk = np.zeros((16, 16, 4), dtype=np.uint8)
    cmyk[..., 0], cmyk[..., 1], cmyk[..., 2], cmyk[..., 3] = 40, 120, 200, 30
    path = tmp_path / "c.jpg"
    Image.fromarray(cmyk, mode="CMYK").save(path, quality=100)
    out = np.asarray(load_rgb(path)).astype(float)
    # standard CMYK → RGB: (255 - K) * (1 - C / 255)
    stored = np.asarray(Image.open(path)).astype(float)  # JPEG round trip of the CMYK values
    k = stored[..., 3]
    expected = np.stack([(255 - k) * (1 - stored[..., i] / 255) for i in range(3)], axis=-1)
    assert out.shape == (16, 16, 3)
    assert np.abs(out - expected).max() <= 1.0


def test_errors_name_row_and_file(tmp_path):
    with pytest.raises(ImageLoadError, match=r"row 7: image file .*missing\.png does not exist"):
        read_image_bytes(tmp_path / "missing.png", row=7)
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(_png_bytes(Image.new("RGB", (64, 64)))[:60])  # truncated
    with pytest.raises(ImageLoadError, match=r"row 3: image .*corrupt\.png cannot be decoded"):
        read_image_bytes(bad, row=3)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageLoadError, match="text.png"):
        load_rgb(tmp_path / "text.png")
