"""PNG, JPEG and TIFF images (the Kaggle chest X-ray sets are JPEG/PNG)."""

import numpy as np
import pytest
from PIL import Image as PILImage

from viewer.io import LoadError, discover, load_series, to_display


def _open(path):
    found = discover([path])
    assert not found.problems, found.problems
    assert len(found.series) == 1
    return load_series(found.series[0])


def test_8bit_grayscale_png_is_shown_as_stored(tmp_path):
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    PILImage.fromarray(pixels).save(tmp_path / "cxr.png")
    image = _open(tmp_path / "cxr.png")
    assert image.kind == "raster"
    assert image.photometric == "MONOCHROME2"
    assert image.pixels.shape == (1, 16, 16)
    np.testing.assert_array_equal(image.pixels[0], pixels)
    np.testing.assert_allclose(to_display(image), pixels / 255.0, atol=1 / 255)
    assert image.identity.patient_name == ""


def test_16bit_png_keeps_its_depth(tmp_path):
    pixels = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 13) % 60000
    PILImage.fromarray(pixels).save(tmp_path / "deep.png")
    image = _open(tmp_path / "deep.png")
    np.testing.assert_array_equal(image.pixels[0], pixels.astype(np.float32))
    assert image.default_window.source == "auto"


def test_rgb_jpeg_with_equal_channels_is_grayscale(tmp_path):
    grey = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))
    PILImage.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "xray.jpeg", quality=100)
    image = _open(tmp_path / "xray.jpeg")
    # JPEG chroma rounding can make the channels differ by one level; then it stays colour.
    if image.is_color:
        assert np.abs(image.pixels[0].astype(int) - grey[..., None]).max() <= 3
    else:
        assert np.abs(image.pixels[0] - grey).max() <= 3


def test_colour_png_stays_colour(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200
    PILImage.fromarray(rgb).save(tmp_path / "photo.png")
    image = _open(tmp_path / "photo.png")
    assert image.is_color
    assert image.pixels.shape == (1, 8, 8, 3)
    assert to_display(image)[0, 0, 0] == pytest.approx(200 / 255)


def test_multipage_tiff_becomes_frames(tmp_path):
    pages = [PILImage.fromarray(np.full((10, 12), v, np.uint8)) for v in (10, 20, 30)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    image = _open(tmp_path / "stack.tif")
    assert image.pixels.shape == (3, 10, 12)
    assert image.pixels[:, 0, 0].tolist() == [10, 20, 30]


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40), np.uint8)
    pixels[:, :5] = 255
    img = PILImage.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    image = _open(tmp_path / "rotated.jpg")
    assert image.pixels.shape == (1, 40, 20)
    assert image.pixels[0, :5].mean() > 200  # the bright band is now on top


def test_broken_png_is_reported_and_the_good_one_opens(tmp_path):
    good = tmp_path / "good.png"
    PILImage.fromarray(np.zeros((32, 32), np.uint8)).save(good)
    (tmp_path / "broken.png").write_bytes(good.read_bytes()[:40])
    found = discover([tmp_path])
    reasons = {p.path: p.reason for p in found.problems}
    for series in found.series:
        try:
            load_series(series)
        except LoadError as exc:
            reasons[exc.path] = exc.reason
    assert set(reasons) == {str(tmp_path / "broken.png")}
    assert "PNG" in reasons[str(tmp_path / "broken.png")]
