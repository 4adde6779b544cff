"""Multiplanar reformatting against SimpleITK's reading of the same files: every voxel lands at
the patient coordinate SimpleITK gives it, and a blob shows where radiologists expect it in each
plane, for axial, coronal and sagittal acquisitions in either slice order, and uneven spacing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from viewer.io.dicom_writer import write_ct_series
from viewer.io.discovery import discover
from viewer.io.loader import load_series
from viewer.io.mpr import MprError, Reformat
from viewer.resources import resource_path

# Acquisition orientations: ImageOrientationPatient, and the patient axis the slices step along.
ACQUISITIONS = {
    "axial": ((1, 0, 0, 0, 1, 0), (0, 0, 1)),
    "coronal": ((1, 0, 0, 0, 0, -1), (0, 1, 0)),
    "sagittal": ((0, 1, 0, 0, 0, -1), (-1, 0, 0)),
}
SHAPE = (12, 20, 24)  # slices, rows, columns
SPACING = (3.0, 0.8, 0.6)  # mm between slices, rows, columns


def _write(folder: Path, volume: np.ndarray, acquisition: str, *, reverse=False, steps=None) -> Path:
    """``volume[k, j, i]`` as a CT series acquired in ``acquisition``; ``steps`` (mm) replace the
    even slice spacing; ``reverse`` stores the slices' instance numbers from the far end."""
    paths = write_ct_series(volume.astype(np.int16), folder, spacing=SPACING)
    iop, along = ACQUISITIONS[acquisition]
    offsets = (
        np.concatenate([[0.0], np.cumsum(steps)]) if steps is not None else np.arange(len(paths)) * SPACING[0]
    )
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        ds.ImageOrientationPatient = list(iop)
        ds.ImagePositionPatient = [
            float(v) for v in np.array([-10.0, 20.0, 30.0]) + offsets[k] * np.array(along)
        ]
        if reverse:
            ds.InstanceNumber = len(paths) - k
        ds.save_as(path)
    return folder


def _open(folder: Path):
    image = load_series(discover([folder]).series[0])
    return image, Reformat.of(image)


def _sitk(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


@pytest.mark.parametrize("acquisition", sorted(ACQUISITIONS))
@pytest.mark.parametrize("reverse", [False, True])
def test_every_voxel_lies_where_simpleitk_puts_it(tmp_path, acquisition, reverse):
    volume = np.random.default_rng(0).permutation(np.prod(SHAPE)).reshape(SHAPE) % 3000
    folder = _write(tmp_path, volume, acquisition, reverse=reverse)
    image, reformat = _open(folder)
    reference = _sitk(folder)
    values = sitk.GetArrayViewFromImage(reference)
    display = reformat.display(image.pixels)
    rng = np.random.default_rng(1)
    for _ in range(40):
        point = tuple(int(rng.integers(0, n)) for n in reformat.shape)
        index = reformat.to_array(point)
        assert reformat.from_array(index) == pytest.approx(point)
        where = reformat.patient(index)
        sitk_index = reference.TransformPhysicalPointToIndex(where)
        assert reference.TransformIndexToPhysicalPoint(sitk_index) == pytest.approx(where, abs=1e-3)
        value = values[sitk_index[2], sitk_index[1], sitk_index[0]]
        assert display[point] == pytest.approx(float(value))
        assert image.pixels[tuple(round(float(v)) for v in index)] == pytest.approx(float(value))


def _blob_volume(image_shape, centre) -> np.ndarray:
    """A blob peaking at 1000 on the voxel ``centre`` only."""
    grid = np.indices(image_shape).transpose(1, 2, 3, 0)
    return np.rint(1000 * np.exp(-np.sum((grid - np.asarray(centre)) ** 2, axis=-1) / 2))


@pytest.mark.parametrize("acquisition", sorted(ACQUISITIONS))
def test_a_blob_right_anterior_superior_shows_where_a_radiologist_looks(tmp_path, acquisition):
    """Axial and coronal put the patient's right on the viewer's left; coronal and sagittal put
    superior at the top; axial puts anterior at the top, sagittal on the left."""
    iop, along = ACQUISITIONS[acquisition]
    columns, rows, normal = np.array(iop[:3]), np.array(iop[3:]), np.array(along)
    # The array voxel nearest patient offset (-4, -4, +4) mm (right, anterior, superior) from the centre.
    centre = np.array([s / 2 for s in SHAPE])
    wanted = np.array([-4.0, -4.0, 4.0])
    index = np.rint(
        centre
        + np.array([wanted @ normal / SPACING[0], wanted @ rows / SPACING[1], wanted @ columns / SPACING[2]])
    )
    folder = _write(tmp_path, _blob_volume(SHAPE, index), acquisition)
    image, reformat = _open(folder)
    display = reformat.display(image.pixels)
    peak = np.unravel_index(np.argmax(display), display.shape)
    assert reformat.to_array(peak) == pytest.approx(tuple(index))
    for plane in ("axial", "coronal", "sagittal"):
        picture = reformat.plane(
            display, plane, {"axial": peak[0], "coronal": peak[1], "sagittal": peak[2]}[plane]
        )
        row, col = np.unravel_index(np.argmax(picture), picture.shape)
        assert picture[row, col] == 1000
        assert row < picture.shape[0] / 2, plane  # anterior (axial) or superior: the top half
        assert col < picture.shape[1] / 2, plane  # right (axial, coronal) or anterior: the left half
    assert reformat.letters("axial") == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    assert reformat.letters("coronal") == {"top": "S", "bottom": "I", "left": "R", "right": "L"}
    assert reformat.letters("sagittal") == {"top": "S", "bottom": "I", "left": "A", "right": "P"}


def test_planes_have_the_physical_aspect_of_their_axes(tmp_path):
    folder = _write(tmp_path, np.zeros(SHAPE), "axial")
    _image, reformat = _open(folder)
    assert reformat.shape == SHAPE
    assert reformat.plane_spacing("axial") == pytest.approx((0.8, 0.6))
    assert reformat.plane_spacing("coronal") == pytest.approx((3.0, 0.6))
    assert reformat.plane_spacing("sagittal") == pytest.approx((3.0, 0.8))
    assert reformat.notes == ()


def test_a_missing_slice_is_resampled_at_its_true_position(tmp_path):
    """Slices 3 mm apart with one missing (a 6 mm step): the coronal plane is resampled onto 3 mm
    steps, and a slab at a known height lands on the row of its height."""
    steps = [3.0] * 5 + [6.0] + [3.0] * 5  # 12 slices over 36 mm
    volume = np.zeros(SHAPE)
    volume[8] = 1000  # array slice 8 lies at 27 mm
    folder = _write(tmp_path, volume, "axial", steps=steps)
    image, reformat = _open(folder)
    assert "uneven slice spacing (3.00 to 6.00 mm)" in reformat.notes[0]
    assert reformat.shape[0] == 13 and reformat.spacing[0] == pytest.approx(3.0)
    display = reformat.display(image.pixels)
    coronal = reformat.plane(display, "coronal", 10)
    bright = np.flatnonzero(coronal[:, 0] > 500)
    # Superior at the top: 27 mm of 36 is display row (36 - 27) / 3 = 3.
    assert list(bright) == [3]
    index = reformat.to_array((3.0, 10.0, 0.0))
    assert index[0] == pytest.approx(8.0)
    assert reformat.patient(index)[2] == pytest.approx(30.0 + 27.0)
    assert reformat.display(image.pixels > 0, nearest=True).dtype == bool


def test_a_radiograph_has_no_planes_and_says_why():
    image = load_series(discover([resource_path("samples", "dicom", "cxr_0001.dcm")]).series[0])
    with pytest.raises(MprError, match="several slices"):
        Reformat.of(image)


def test_the_bundled_head_ct_reformats_as_simpleitk_reads_it():
    folder = resource_path("samples", "dicom", "ct_0001")
    image, reformat = _open(folder)
    reference = _sitk(folder)
    for index in [(0, 0, 0), (image.n_frames - 1, 10, 20), (14, 128, 100)]:
        expected = reference.TransformIndexToPhysicalPoint(
            reference.TransformPhysicalPointToIndex(reformat.patient(index))
        )
        assert reformat.patient(index) == pytest.approx(expected, abs=1e-3)
    assert reformat.letters("axial")["left"] == "R"
