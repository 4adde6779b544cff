"""Measurements against hand-computed values (lengths and angles in mm through anisotropic
spacing, region statistics against numpy over the same pixels, areas from the shapes' formulas),
and their DICOM SR TID 1500 round trip (highdicom reads the values back, dciodvfy finds no error,
an anonymised report still finds its frames on the original study)."""

from __future__ import annotations

import math
from dataclasses import replace

import highdicom as hd
import numpy as np
import pytest

from tests.io.test_dicom_validity import dciodvfy, validate  # noqa: F401 (the fixture)
from viewer.io import discover, load_series
from viewer.io.dicom_header import read_dataset
from viewer.io.drawn_shapes import rasterize
from viewer.io.measurement_sr import read_measurement_report, write_measurement_report
from viewer.io.measurements import Measurement, MeasurementError, measure
from viewer.resources import resource_path

HEAD_CT = resource_path("samples", "dicom", "ct_0001")
FILM = resource_path("samples", "dicom", "cxr_0001.dcm")


@pytest.fixture(scope="module")
def ct():
    return load_series(discover([HEAD_CT]).series[0])


def _anisotropic(image):
    """The CT with rows 1.0 mm apart and columns 0.5 mm: lengths and angles differ from pixels."""
    return replace(image, geometry=replace(image.geometry, spacing=(5.0, 1.0, 0.5)))


def test_a_length_is_in_mm_through_each_axis_spacing(ct):
    image = _anisotropic(ct)
    got = measure(Measurement("length", 14, ((10.0, 20.0), (40.0, 60.0))), image)
    assert got.length == pytest.approx(math.hypot(30 * 0.5, 40 * 1.0))
    assert got.calibrated and got.text() == f"{math.hypot(15, 40):.1f} mm"
    assert "Pixel Spacing" in got.spacing


def test_an_angle_is_measured_in_the_patient_not_in_pixels(ct):
    image = _anisotropic(ct)
    got = measure(Measurement("angle", 3, ((0.0, 0.0), (10.0, 0.0), (20.0, 10.0))), image)
    # Arms (-5, 0) and (5, 10) mm: 116.57 degrees (in pixels it would be 135).
    assert got.angle == pytest.approx(math.degrees(math.acos(-25 / (5 * math.sqrt(125)))))
    with pytest.raises(MeasurementError, match="non-zero"):
        measure(Measurement("angle", 3, ((1.0, 1.0), (1.0, 1.0), (2.0, 2.0))), image)


@pytest.mark.parametrize(
    ("kind", "points", "area"),
    [
        ("rectangle", ((100.0, 150.0), (180.0, 200.0)), 80 * 50),
        ("ellipse", ((100.0, 150.0), (180.0, 200.0)), math.pi / 4 * 80 * 50),
        ("polygon", ((100.0, 150.0), (180.0, 150.0), (140.0, 230.0)), 80 * 80 / 2),
    ],
)
def test_region_statistics_equal_numpy_over_the_same_pixels(ct, kind, points, area):
    image = _anisotropic(ct)
    got = measure(Measurement(kind, 14, points), image)
    mask = rasterize(kind, np.array(points), image.rows, image.columns)
    values = image.frame(14)[mask]
    assert got.pixels == mask.sum() > 100
    assert got.mean == pytest.approx(values.mean())
    assert got.sd == pytest.approx(values.std())
    assert (got.minimum, got.maximum) == (values.min(), values.max())
    assert got.area == pytest.approx(area * 1.0 * 0.5)  # mm²: the shape's own area, not its pixels
    assert got.units == "HU" and "HU" in got.text()


def test_a_radiograph_says_where_its_spacing_came_from_and_without_one_measures_pixels():
    film = load_series(discover([FILM]).series[0])
    got = measure(Measurement("length", 0, ((0.0, 0.0), (100.0, 0.0))), film)
    assert got.spacing.startswith("spacing from")
    assert film.geometry.spacing_source.replace("/ERMF", "") in got.spacing.replace(" ", "")
    bare = replace(film, geometry=replace(film.geometry, spacing_source="none"))
    plain = measure(Measurement("length", 0, ((0.0, 0.0), (100.0, 0.0))), bare)
    assert plain.length == pytest.approx(100.0) and not plain.calibrated and plain.text() == "100.0 px"
    with pytest.raises(MeasurementError, match="points"):
        Measurement("length", 0, ((0.0, 0.0),))


def _all_kinds(image):
    drawn = [
        Measurement("length", 10, ((100.5, 100.5), (300.5, 250.5)), "midline shift"),
        Measurement("angle", 12, ((50.0, 50.0), (100.0, 50.0), (150.0, 120.0))),
        Measurement("rectangle", 14, ((200.0, 150.0), (260.0, 190.0))),
        Measurement("ellipse", 14, ((300.0, 280.0), (360.0, 300.0)), "haematoma"),
        Measurement("polygon", 16, ((100.0, 300.0), (180.0, 310.0), (150.0, 380.0), (110.0, 360.0))),
    ]
    return [measure(m, image) for m in drawn]


@pytest.mark.parametrize("anonymize", [True, False])
def test_measurements_round_trip_through_a_tid_1500_report(ct, tmp_path, dciodvfy, anonymize):  # noqa: F811
    measured = _all_kinds(ct)
    out = write_measurement_report(ct, measured, tmp_path / "sr.dcm", anonymize=anonymize)
    assert validate(dciodvfy, out) == []
    back = read_measurement_report(out, ct)
    assert [m.measurement for m in measured] == [
        replace(b, points=tuple(tuple(float(v) for v in p) for p in b.points)) for b in back
    ]
    sr = hd.sr.srread(out)
    groups = sr.content.get_planar_roi_measurement_groups()
    assert len(groups) == 5
    length = groups[0].get_measurements(name=hd.sr.CodedConcept("410668003", "SCT", "Length"))[0]
    assert length.value == pytest.approx(measured[0].length, rel=1e-6)
    assert length.unit.value == "mm"
    ellipse = groups[3]
    assert ellipse.roi.graphic_type == hd.sr.GraphicTypeValues.ELLIPSE
    mean = ellipse.get_measurements(name=hd.sr.CodedConcept("373098007", "SCT", "Mean"))[0]
    assert mean.value == pytest.approx(measured[3].mean, rel=1e-6) and mean.unit.value == "[hnsf'U]"
    original = read_dataset(ct.frames[0].source)
    assert (str(sr.PatientName) != str(original.PatientName)) == anonymize
    assert (
        sr.StudyInstanceUID != original.StudyInstanceUID
        if anonymize
        else sr.StudyInstanceUID == original.StudyInstanceUID
    )
    with pytest.raises(FileExistsError):
        write_measurement_report(ct, measured, out)


def test_a_file_that_is_not_a_report_is_named(ct, tmp_path):
    with pytest.raises(MeasurementError, match=r"CT0001\.dcm: not a DICOM SR"):
        read_measurement_report(HEAD_CT / "CT0001.dcm", ct)
    film = load_series(discover([FILM]).series[0])
    bare = replace(film, geometry=replace(film.geometry, spacing_source="none"))
    plain = measure(Measurement("length", 0, ((0.0, 0.0), (100.0, 0.0))), bare)
    with pytest.raises(MeasurementError, match="no pixel spacing"):
        write_measurement_report(bare, [plain], tmp_path / "x.dcm")


# --- measurements in MPR planes -------------------------------------------------------------------


def _sitk_series():
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(HEAD_CT)))
    return reader.Execute()


def _patient_by_sitk(reformat, plane, index, points, volume):
    """Plane points to patient points through SimpleITK's own index-to-physical mapping."""
    from viewer.io.mpr import PLANE_AXES

    normal, row, col = PLANE_AXES[plane]
    out = []
    for x, y in points:
        display = [0.0, 0.0, 0.0]
        display[normal], display[row], display[col] = float(index), y - 0.5, x - 0.5
        k, j, i = reformat.to_array(tuple(display))
        out.append(volume.TransformContinuousIndexToPhysicalPoint((i, j, k)))
    return np.asarray(out)


def test_a_length_in_a_coronal_plane_is_the_patient_distance_simpleitk_gives(ct):
    from viewer.io.mpr import Reformat

    reformat, volume = Reformat.of(ct), _sitk_series()
    points = ((100.5, 3.5), (300.5, 20.5))  # across columns and down through the slices
    got = measure(Measurement("length", 260, points, plane="coronal"), ct)
    ends = _patient_by_sitk(reformat, "coronal", 260, points, volume)
    assert got.length == pytest.approx(float(np.linalg.norm(ends[1] - ends[0])), rel=1e-6)
    row_mm, col_mm = reformat.plane_spacing("coronal")
    assert got.length == pytest.approx(math.hypot(200 * col_mm, 17 * row_mm))
    assert row_mm == pytest.approx(ct.geometry.spacing[0]) and "slice positions" in got.spacing


def test_a_sagittal_region_holds_the_voxels_under_it(ct):
    from viewer.io.mpr import PLANE_AXES, Reformat

    reformat = Reformat.of(ct)
    points = ((200.0, 5.0), (320.0, 22.0))
    got = measure(Measurement("rectangle", 250, points, plane="sagittal"), ct)
    _normal, row, col = PLANE_AXES["sagittal"]
    mask = rasterize("rectangle", np.asarray(points), reformat.shape[row], reformat.shape[col])
    expected = []
    for r, c in zip(*np.nonzero(mask), strict=True):  # each covered pixel's voxel in the array
        display = [0.0, 0.0, 0.0]
        display[PLANE_AXES["sagittal"][0]], display[row], display[col] = 250.0, float(r), float(c)
        k, j, i = (round(v) for v in reformat.to_array(tuple(display)))
        expected.append(ct.pixels[k, j, i])
    assert got.pixels == mask.sum() == len(expected)
    assert got.mean == pytest.approx(float(np.mean(expected)), rel=1e-6)
    assert got.maximum == pytest.approx(float(np.max(expected)))
    row_mm, col_mm = reformat.plane_spacing("sagittal")
    assert got.area == pytest.approx(120 * col_mm * 17 * row_mm)


def test_a_measurement_on_the_acquired_plane_is_one_of_that_slice(ct):
    from viewer.io.measurements import on_acquired_slice
    from viewer.io.mpr import Reformat

    reformat = Reformat.of(ct)
    drawn = Measurement("length", 3, ((10.0, 20.0), (40.0, 60.0)), plane="axial")
    frame = on_acquired_slice(drawn, reformat)
    assert frame.plane == "" and 0 <= frame.frame < ct.n_frames
    assert measure(frame, ct).length == pytest.approx(measure(drawn, ct).length)
    assert reformat.to_array((3.0, 20.0, 10.0))[0] == pytest.approx(frame.frame)
    coronal = Measurement("length", 3, ((10.0, 2.0), (40.0, 6.0)), plane="coronal")
    assert on_acquired_slice(coronal, reformat) is coronal


def test_plane_measurements_round_trip_as_scoord3d(ct, tmp_path, dciodvfy):  # noqa: F811
    drawn = [
        Measurement("length", 260, ((100.5, 3.5), (300.5, 20.5)), plane="coronal"),
        Measurement("ellipse", 250, ((200.0, 5.0), (320.0, 22.0)), "bleed", plane="sagittal"),
        Measurement("polygon", 240, ((100.0, 4.0), (180.0, 4.0), (140.0, 25.0)), plane="coronal"),
        Measurement("rectangle", 14, ((100.0, 150.0), (180.0, 200.0))),
    ]
    measured = [measure(m, ct) for m in drawn]
    out = write_measurement_report(ct, measured, tmp_path / "sr.dcm")
    assert validate(dciodvfy, out) == []
    groups = hd.sr.srread(out).content.get_planar_roi_measurement_groups()
    assert [type(g.roi).__name__ for g in groups] == ["ImageRegion3D"] * 3 + ["ImageRegion"]
    assert groups[1].roi.graphic_type == hd.sr.GraphicTypeValues3D.ELLIPSE
    back = read_measurement_report(out, ct)
    assert [(b.kind, b.plane, b.frame, b.label) for b in back] == [
        (m.kind, m.plane, m.frame, m.label) for m in drawn
    ]
    for b, m in zip(back, drawn, strict=True):
        np.testing.assert_allclose(b.points, m.points, atol=1e-3)
    assert measure(back[0], ct).length == pytest.approx(measured[0].length, rel=1e-6)
