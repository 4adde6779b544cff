"""The real radiograph and head CT files named in the foundation issue, and pixel spacing rules."""

import numpy as np
import pytest

from viewer.io import Window, discover, load_series, to_display
from viewer.io.dicom_writer import write_radiograph


def _load(path):
    found = discover([path])
    assert found.series, found.problems
    return load_series(found.series[0])


def test_chest_cr_and_its_jpeg2000_twins(testdata):
    uncompressed = _load(testdata("RG1_UNCR.dcm"))
    lossless = _load(testdata("RG1_J2KR.dcm"))
    lossy = _load(testdata("RG1_J2KI.dcm"))
    lossy_reference = _load(testdata("RG1_UNCI.dcm"))  # the lossy image, stored uncompressed
    assert uncompressed.pixels.shape == (1, 1955, 1841)
    assert uncompressed.modality == "CR" and uncompressed.bits_stored == 15
    np.testing.assert_array_equal(lossless.pixels, uncompressed.pixels)
    np.testing.assert_array_equal(lossy.pixels, lossy_reference.pixels)
    error = np.abs(lossy.pixels - uncompressed.pixels)
    value_range = np.ptp(uncompressed.pixels)
    assert error.mean() < 0.005 * value_range and error.max() < 0.05 * value_range
    for image in (uncompressed, lossless, lossy):
        assert image.invert and image.default_window == Window(15000, 30000, "LINEAR", "", "file")


def test_invalid_zero_pixel_spacing_is_reported_not_fatal(testdata):
    image = _load(testdata("RG1_UNCR.dcm"))
    assert image.geometry.spacing_source == "none"
    assert image.geometry.spacing[1:] == (1.0, 1.0)
    assert any("PixelSpacing" in w and "invalid" in w for w in image.warnings)


def test_head_ct_slice_in_hounsfield_units(testdata):
    image = _load(testdata("693_UNCR.dcm"))
    twin = _load(testdata("693_J2KR.dcm"))
    np.testing.assert_array_equal(image.pixels, twin.pixels)
    assert image.units == "HU" and image.modality == "CT"
    hu = image.pixels[0]
    assert np.median(hu[:40, :40]) < -900  # air outside the head
    centre = hu[200:312, 200:312]
    assert 15 < np.median(centre) < 60  # brain parenchyma
    assert (hu > 700).sum() > 2000  # skull
    brain = to_display(image, voi=Window(40, 80))
    grey_matter = brain[200:312, 200:312]
    # In the brain window, brain tissue is mid-grey with visible contrast, not clipped.
    assert 0.3 < np.median(grey_matter) < 0.8 and grey_matter.std() > 0.03
    assert image.geometry.spacing == pytest.approx((5.0, 0.478516, 0.478516))
    assert image.geometry.spacing_source == "PixelSpacing"


@pytest.mark.parametrize(
    ("pixel", "imager", "ermf", "source", "expected"),
    [
        ((0.15, 0.15), (0.2, 0.2), None, "PixelSpacing", 0.15),
        ((0.0, 0.0), (0.14, 0.14), None, "ImagerPixelSpacing", 0.14),
        (None, (0.14, 0.14), None, "ImagerPixelSpacing", 0.14),
        (None, (0.2, 0.2), 1.25, "ImagerPixelSpacing/ERMF", 0.16),
        ((0.0, 0.0), None, None, "none", 1.0),
    ],
)
def test_projection_spacing_sources(tmp_path, pixel, imager, ermf, source, expected):
    path = write_radiograph(
        np.zeros((32, 32)), tmp_path / "dx.dcm", pixel_spacing=pixel, imager_pixel_spacing=imager
    )
    if ermf is not None:
        import pydicom

        ds = pydicom.dcmread(path)
        ds.EstimatedRadiographicMagnificationFactor = ermf
        path.unlink()
        ds.save_as(path)
    image = _load(path)
    assert image.geometry.spacing_source == source
    assert image.geometry.spacing[1:] == pytest.approx((expected, expected))
    if pixel == (0.0, 0.0):
        assert any("PixelSpacing" in w for w in image.warnings)


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_written_radiograph_displays_the_same_in_both_photometrics(tmp_path, photometric):
    ramp = np.tile(np.linspace(0, 1, 64), (16, 1))
    path = write_radiograph(ramp, tmp_path / "r.dcm", photometric=photometric, window=(2047.5, 4096))
    shown = to_display(_load(path))
    if photometric == "MONOCHROME1":
        assert shown[0, -1] > shown[0, 0]  # the most attenuating end is white either way
    np.testing.assert_allclose(shown, ramp, atol=2e-3)
