"""DICOM RT Structure Sets built as planning systems write them (pydicom, the standard's modules),
over the sample CT series as stored and rotated into an oblique orientation."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from skimage.draw import polygon as draw_polygon

from viewer.io import discover
from viewer.io.annotations import load_annotation
from viewer.io.loader import load_series
from viewer.resources import resource_path

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
PENTAGON = [(200, 180), (260, 210), (250, 290), (170, 300), (150, 230)]  # (col, row) pixels
SQUARE = [(300, 300), (420, 300), (420, 420), (300, 420)]
HOLE = [(340, 340), (380, 340), (380, 380), (340, 380)]


def slices(folder):
    return sorted(
        (pydicom.dcmread(p) for p in folder.iterdir()), key=lambda d: float(d.ImagePositionPatient[2])
    )


def to_patient(ds, polygon):
    """Pixel (col, row) -> patient mm by the standard's formula (C.7.6.2.1.1), from the slice's
    own header: independent of the reader's use of the opened image's geometry."""
    position = np.asarray(ds.ImagePositionPatient, float)
    across, down = (
        np.asarray(ds.ImageOrientationPatient[:3], float),
        np.asarray(ds.ImageOrientationPatient[3:], float),
    )
    row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
    return [position + c * col_mm * across + r * row_mm * down for c, r in polygon]


def drawn(polygon, shape):
    out = np.zeros(shape, bool)
    cols, rows = zip(*polygon, strict=True)
    out[draw_polygon(rows, cols, shape)] = True
    return out


def contour(points, sop_uid=None, kind="CLOSED_PLANAR"):
    item = Dataset()
    item.ContourGeometricType = kind
    item.NumberOfContourPoints = len(points)
    item.ContourData = [round(float(v), 4) for p in points for v in p]
    if sop_uid:
        ref = Dataset()
        ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ref.ReferencedSOPInstanceUID = sop_uid
        item.ContourImageSequence = Sequence([ref])
    return item


def structure_set(path, first, rois, series_uid=None):
    """rois: [(number, name, interpreter, [contour items])]."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RT_STRUCTURE_SET_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = RT_STRUCTURE_SET_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = first.StudyInstanceUID, generate_uid()
    ds.PatientID = first.get("PatientID", "")
    ds.StructureSetLabel = "reading"
    series = Dataset()
    series.SeriesInstanceUID = series_uid or first.SeriesInstanceUID
    study = Dataset()
    study.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study.RTReferencedSeriesSequence = Sequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = first.get("FrameOfReferenceUID", generate_uid())
    frame.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = (
        Sequence(),
        Sequence(),
        Sequence(),
    )
    for number, name, interpreter, items in rois:
        roi = Dataset()
        roi.ROINumber, roi.ROIName = number, name
        roi.ReferencedFrameOfReferenceUID = frame.FrameOfReferenceUID
        ds.StructureSetROISequence.append(roi)
        contours = Dataset()
        contours.ReferencedROINumber = number
        contours.ROIDisplayColor = [255, 0, 0]
        contours.ContourSequence = Sequence(items)
        ds.ROIContourSequence.append(contours)
        observation = Dataset()
        observation.ObservationNumber, observation.ReferencedROINumber = number, number
        observation.RTROIInterpretedType, observation.ROIInterpreter = "ORGAN", interpreter
        ds.RTROIObservationsSequence.append(observation)
    ds.save_as(path, enforce_file_format=True)
    return path


def rotated_copy(source, target, degrees):
    """The series turned about the slice normal through its first pixel: an oblique acquisition."""
    target.mkdir()
    theta = np.radians(degrees)
    turn = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    for n, ds in enumerate(slices(source)):
        iop = np.asarray(ds.ImageOrientationPatient, float)
        ds.ImageOrientationPatient = [round(float(v), 8) for v in (*turn @ iop[:3], *turn @ iop[3:])]
        ds.save_as(target / f"slice_{n:03d}.dcm")
    return target


@pytest.fixture(scope="module", params=[0, 25], ids=["as stored", "oblique 25 degrees"])
def series(request, tmp_path_factory):
    folder = resource_path("samples", "dicom", "ct_0001")
    if request.param:
        folder = rotated_copy(folder, tmp_path_factory.mktemp("oblique") / "ct", request.param)
    image = load_series(discover([folder]).series[0])
    return slices(folder), image


def test_contours_fill_the_slices_they_name_and_holes_stay_open(tmp_path, series):
    headers, image = series
    shape = (image.rows, image.columns)
    assert [h.SOPInstanceUID for h in headers] == [f.sop_instance_uid for f in image.frames]
    bleed = [contour(to_patient(headers[k], PENTAGON), headers[k].SOPInstanceUID) for k in (10, 11, 12)]
    # No image reference: placed by the plane it lies in; the inner square is a hole.
    edema = [contour(to_patient(headers[15], SQUARE)), contour(to_patient(headers[15], HOLE))]
    marker = [contour(to_patient(headers[5], [(10, 10)]), kind="POINT")]
    path = structure_set(
        tmp_path / "rs.dcm",
        headers[0],
        [
            (1, "Hemorrhage", "Reader^One", bleed),
            (2, "Edema", "Reader^Two", edema),
            (3, "Marker", "", marker),
        ],
    )
    annotation = load_annotation(path)
    assert annotation.labels == ("Hemorrhage", "Edema") and annotation.matches(image)
    assert [r.reader for r in annotation.regions] == ["Reader^One", "Reader^Two"]
    assert any("POINT" in p and "Marker" in p for p in annotation.problems)
    hemorrhage, edema_mask = annotation.mask(image, "Hemorrhage"), annotation.mask(image, "Edema")
    assert np.flatnonzero(hemorrhage.any(axis=(1, 2))).tolist() == [10, 11, 12]
    assert np.flatnonzero(edema_mask.any(axis=(1, 2))).tolist() == [15]
    truth = drawn(PENTAGON, shape)
    for k in (10, 11, 12):
        assert (hemorrhage[k] & truth).sum() / (hemorrhage[k] | truth).sum() > 0.97
    ring = drawn(SQUARE, shape) & ~drawn(HOLE, shape)
    assert (edema_mask[15] & ring).sum() / (edema_mask[15] | ring).sum() > 0.95
    assert not edema_mask[15][360, 360]  # inside the hole


def test_contours_of_another_series_do_not_land_on_this_one(tmp_path, series):
    headers, image = series
    by_plane = [contour(to_patient(headers[8], PENTAGON))]
    other = structure_set(
        tmp_path / "other.dcm", headers[0], [(1, "Hemorrhage", "", by_plane)], generate_uid()
    )
    assert not load_annotation(other).matches(image)
    named = [contour(to_patient(headers[8], PENTAGON), generate_uid())]  # an image not in the series
    elsewhere = structure_set(tmp_path / "elsewhere.dcm", headers[0], [(1, "Hemorrhage", "", named)])
    assert not load_annotation(elsewhere).matches(image)
