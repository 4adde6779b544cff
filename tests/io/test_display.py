"""The grayscale display pipeline against pydicom's reference implementation (PS3.3 C.11)."""

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

from viewer.io import Window, discover, load_series, to_display
from viewer.io.voi import apply_voi_lut, apply_window, auto_window


def _load(path):
    found = discover([path])
    assert found.series, found.problems
    return load_series(found.series[0])


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize(("center", "width"), [(40, 80), (-600, 1500), (2048, 1), (0.5, 2), (600, 2800)])
def test_window_functions_match_pydicom(function, center, width):
    if function == "LINEAR_EXACT" and width < 1:
        pytest.skip("width must be > 0")
    values = np.linspace(center - width, center + width, 4001).astype(np.float32)
    values = np.concatenate([values, np.float32([center - 0.5, center, center + 0.5])])
    ds = Dataset()
    ds.BitsStored, ds.PixelRepresentation, ds.PhotometricInterpretation = 16, 0, "MONOCHROME2"
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = center, width, function
    reference = apply_windowing(values.astype(np.float64), ds) / 65535.0
    ours = apply_window(values, Window(center, width, function))
    assert ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1e-5


def test_voi_lut_sequence_matches_pydicom(testdata):
    path = testdata("vlut_04.dcm")
    image = _load(path)
    assert image.voi_luts, "the VOI LUT Sequence was not read"
    assert image.default_window is None  # the file has no window: its LUT is the default VOI
    ds = pydicom.dcmread(path)
    reference = apply_voi(ds.pixel_array, ds, index=0).astype(np.float64)
    lut = image.voi_luts[0]
    ours = apply_voi_lut(image.pixels[0], lut) * lut.output_max
    np.testing.assert_allclose(ours, reference, atol=1e-3)


def test_modality_lut_sequence_matches_pydicom(testdata):
    path = testdata("mlut_18.dcm")
    image = _load(path)
    ds = pydicom.dcmread(path)
    reference = apply_modality_lut(ds.pixel_array, ds)
    np.testing.assert_allclose(image.pixels[0], reference, rtol=1e-6)


def test_monochrome1_is_inverted_after_windowing_once(testdata):
    image = _load(testdata("RG1_UNCR.dcm"))
    assert image.photometric == "MONOCHROME1" and image.invert
    shown = to_display(image)
    raw = to_display(image, invert=False)
    np.testing.assert_allclose(shown, 1.0 - raw, atol=1e-6)
    # Bones white: the spine/mediastinum column is brighter than the lung fields beside it.
    rows, cols = shown.shape
    mid = slice(rows // 3, rows // 2)
    spine = shown[mid, cols // 2 - 40 : cols // 2 + 40].mean()
    right_lung = shown[mid, cols // 4 - 40 : cols // 4 + 40].mean()
    left_lung = shown[mid, 3 * cols // 4 - 40 : 3 * cols // 4 + 40].mean()
    assert spine > right_lung + 0.15 and spine > left_lung + 0.15


def test_display_range_and_auto_window():
    values = np.concatenate([np.zeros(10), np.linspace(0, 1000, 10000), np.full(10, 60000)]).astype(
        np.float32
    )
    window = auto_window(values)
    assert 0 <= window.low < 10 and 990 < window.high <= 1000  # the outliers do not stretch it
    shown = apply_window(values, window)
    assert shown.min() == 0.0 and shown.max() == 1.0
