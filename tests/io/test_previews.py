"""The batch run's previews: a hand-written PNG that Pillow (the reference decoder) reads back to
the exact pixels, and the overlay drawn once per frame equal to the per-map blend."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from viewer.io import discover, load_series
from viewer.io.overlay import FramePainter, blend, colormap_for
from viewer.io.previews import PREVIEWS, jpeg_bytes, png_bytes
from viewer.io.voi import to_display


@pytest.mark.parametrize("shape", [(512, 512, 3), (7, 5, 3), (33, 17), (9, 4, 4), (1, 1, 3)])
def test_png_reads_back_to_the_same_pixels_in_pillow(shape):
    rng = np.random.default_rng(len(shape) * 100 + shape[0])
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    pixels[: shape[0] // 2] = 255 - pixels[: shape[0] // 2]  # rows far apart: the Up filter wraps
    decoded = PILImage.open(io.BytesIO(png_bytes(pixels)))
    decoded.load()  # checks the CRCs and the deflate stream
    assert decoded.mode == {2: "L", 3: "RGB", 4: "RGBA"}[pixels.ndim if pixels.ndim == 2 else shape[2]]
    np.testing.assert_array_equal(np.asarray(decoded), pixels)


def test_png_of_an_overlay_is_smaller_than_the_raw_pixels():
    y, x = np.mgrid[:256, :256]
    smooth = np.stack([(x + y) // 2, x, y], axis=-1).astype(np.uint8)
    assert len(png_bytes(smooth)) < smooth.nbytes / 10


def test_png_refuses_what_it_cannot_write():
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="pixels"):
        png_bytes(np.zeros((4, 4, 2), np.uint8))


def test_jpeg_is_a_jpeg_close_to_the_pixels():
    y, x = np.mgrid[:64, :64]
    smooth = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)
    decoded = PILImage.open(io.BytesIO(jpeg_bytes(smooth)))
    assert decoded.format == "JPEG"
    assert np.abs(np.asarray(decoded, np.int16) - smooth).mean() < 3


def test_every_preview_kind_names_its_suffix():
    assert PREVIEWS["none"] is None
    assert {kind: p[0] for kind, p in PREVIEWS.items() if p} == {"png": ".png", "jpeg": ".jpg"}


@pytest.mark.parametrize("convention", ["unit", "absolute", "signed"])
def test_a_frame_painted_once_draws_each_map_as_the_per_map_blend(convention, tmp_path):
    grey = np.random.default_rng(5).integers(0, 60000, (40, 30)).astype(np.uint16)
    PILImage.fromarray(grey).save(tmp_path / "film.png")
    image = load_series(discover([tmp_path / "film.png"]).series[0])
    painter = FramePainter(image, 0)
    for seed in range(3):
        low = -1 if convention == "signed" else 0
        saliency = np.random.default_rng(seed).uniform(low, 1, (40, 30)).astype(np.float32)
        expected = blend(
            to_display(image, 0),
            saliency,
            cmap=colormap_for(convention),
            signed=convention == "signed",
            low=0.05,
        )
        np.testing.assert_array_equal(painter.paint(saliency, convention), expected)
    with pytest.raises(ValueError, match="differ in shape"):
        painter.paint(np.zeros((3, 3), np.float32), convention)
