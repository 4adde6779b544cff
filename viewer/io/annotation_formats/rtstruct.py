"""DICOM RT Structure Sets (RTSTRUCT): the contours radiotherapy planning systems, 3D Slicer,
OHIF and most CT annotation tools export, read with pydicom.

Each ROI (``StructureSetROISequence``: number and name) has closed planar contours in patient
coordinates (mm, LPS) in ``ROIContourSequence``. A contour lies on the slice its
``ContourImageSequence`` names by SOP Instance UID; without one, on the slice of the structure
set's referenced series whose plane holds it (within half the slice spacing). Points become
pixel indices through that slice's own position, orientation and spacing, so uneven slices and
any orientation are handled. Contours of one ROI on one slice combine even-odd: a contour inside
another is a hole, as the standard's nested-contour rule and the planning systems read them. The
ROI's interpreter (``RTROIObservationsSequence``) is the region's reader.

Contour points are read from the element's text without pydicom's per-value objects (a contour of
millions of points would take gigabytes so), each finite and within a metre-scale bound, at most
``limits.MAX_POLYGON_POINTS`` per contour and ``limits.MAX_FILE_POINTS`` per file; a contour that
lands far outside the slice it is placed on is not filled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from viewer.io.annotation_formats import dicom_modality, register
from viewer.io.annotation_formats.limits import (
    MAX_FILE_POINTS,
    MAX_POLYGON_POINTS,
    POLYGON_MARGIN,
    check_file_size,
    finite_array,
)
from viewer.io.image import Image
from viewer.io.regions import Annotation, AnnotationError, Placement, Region

_MAX_FILE_BYTES = 128 * 1024**2  # pydicom keeps each element as an object: ~5x the file in memory
_MAX_MM = 1e5  # |patient coordinate| in mm: 100 m, far beyond any scanner


def _sniff(path: Path, head: bytes) -> bool:
    return dicom_modality(path, head) == "RTSTRUCT"


class _Contour:
    def __init__(self, points: np.ndarray, sop_instance_uid: str):
        self.points, self.sop_instance_uid = points, sop_instance_uid  # (n, 3) mm; "" if unnamed


class _Placement(Placement):
    """One ROI's contours, filled on an opened series' slices."""

    def __init__(self, contours: list[_Contour], series_uid: str):
        super().__init__()
        self.contours, self.series_uid = contours, series_uid

    def _place(self, image: Image) -> np.ndarray | None:
        positions = [frame.position for frame in image.frames]
        if not image.is_volume or any(p is None for p in positions):
            return None  # no patient-space grid: a radiograph
        uids = {frame.sop_instance_uid: k for k, frame in enumerate(image.frames) if frame.sop_instance_uid}
        same_series = not self.series_uid or self.series_uid == image.identity.series_uid
        direction = np.asarray(image.geometry.direction, float).reshape(3, 3)
        across, down, normal = direction[:, 0], direction[:, 1], np.cross(direction[:, 0], direction[:, 1])
        origins = np.asarray(positions, float)
        _, rows_mm, cols_mm = image.geometry.spacing
        half_gap = 0.5 * (image.geometry.spacing[0] or 1.0)
        mask = np.zeros((image.n_frames, image.rows, image.columns), bool)
        for contour in self.contours:
            if contour.sop_instance_uid:
                k = uids.get(contour.sop_instance_uid)
            elif same_series:
                heights = (contour.points[0] - origins) @ normal  # distance to each slice's plane
                k = int(np.argmin(np.abs(heights)))
                k = k if abs(heights[k]) <= half_gap else None
            else:
                k = None
            if k is None:
                continue
            offset = contour.points - origins[k]
            cols, rows = offset @ across / cols_mm, offset @ down / rows_mm
            reach_x, reach_y = POLYGON_MARGIN * image.columns, POLYGON_MARGIN * image.rows
            if not (
                np.isfinite(cols).all()
                and np.isfinite(rows).all()
                and -reach_x <= cols.min() <= cols.max() <= image.columns + reach_x
                and -reach_y <= rows.min() <= rows.max() <= image.rows + reach_y
            ):
                continue  # not a contour of this slice: far outside it
            mask[k] ^= _fill(list(zip(cols.tolist(), rows.tolist(), strict=True)), image.rows, image.columns)
        return mask if mask.any() else None


def _fill(polygon: list[tuple[float, float]], rows: int, cols: int) -> np.ndarray:
    """Pixels inside a polygon given in (column, row) indices, pixel centres on integers."""
    canvas = PILImage.new("1", (cols, rows), 0)
    ImageDraw.Draw(canvas).polygon(polygon, fill=1, outline=1)
    return np.asarray(canvas, bool)


@register("DICOM RT Structure Set", _sniff)
def read(path: Path) -> Annotation:
    import pydicom

    check_file_size(path, _MAX_FILE_BYTES)
    dataset = pydicom.dcmread(path)
    if getattr(dataset, "Modality", "") != "RTSTRUCT":
        raise AnnotationError(path, f"not an RT Structure Set (Modality {getattr(dataset, 'Modality', '?')})")
    names = {
        int(roi.ROINumber): str(roi.get("ROIName", "") or f"ROI {roi.ROINumber}")
        for roi in dataset.get("StructureSetROISequence", [])
    }
    readers = {
        int(o.ReferencedROINumber): str(o.get("ROIInterpreter", "") or "")
        for o in dataset.get("RTROIObservationsSequence", [])
        if "ReferencedROINumber" in o
    }
    series_uid = _referenced_series(dataset)
    annotation = Annotation(str(path))
    points = 0
    for roi in dataset.get("ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        name = names.get(number, f"ROI {number}")
        contours = []
        for n, item in enumerate(roi.get("ContourSequence", []), start=1):
            kind = str(item.get("ContourGeometricType", "CLOSED_PLANAR"))
            if kind != "CLOSED_PLANAR":
                annotation.problems.append(
                    f"ROI {name!r} contour {n}: a {kind} contour has no inside; skipped"
                )
                continue
            try:
                data = _contour_data(item)
            except ValueError as exc:
                annotation.problems.append(f"ROI {name!r} contour {n}: {exc}; skipped")
                continue
            if data.size < 9 or data.size % 3:
                annotation.problems.append(
                    f"ROI {name!r} contour {n}: {data.size} numbers, not 3 per point of a polygon; skipped"
                )
                continue
            points += data.size // 3
            if points > MAX_FILE_POINTS:
                raise AnnotationError(path, f"its contours hold more than {MAX_FILE_POINTS} points")
            images = item.get("ContourImageSequence", [])
            uid = (
                str(images[0].ReferencedSOPInstanceUID)
                if images and "ReferencedSOPInstanceUID" in images[0]
                else ""
            )
            contours.append(_Contour(data.reshape(-1, 3), uid))
        if contours:
            annotation.regions.append(
                Region(name, place=_Placement(contours, series_uid), reader=readers.get(number, ""))
            )
    if not annotation.regions:
        annotation.problems.append("the structure set holds no closed contour")
    return annotation


def _contour_data(item) -> np.ndarray:
    """A contour's ``ContourData`` as float64 mm, parsed from the element's text (no per-value
    pydicom objects), checked: at most :data:`MAX_POLYGON_POINTS` points, finite, within
    :data:`_MAX_MM`."""
    element = item.get_item("ContourData") if "ContourData" in item else None
    if element is None or element.value is None:
        return np.zeros(0)
    value = element.value
    if isinstance(value, bytes):
        if len(value) > 3 * MAX_POLYGON_POINTS * 24:  # a DS value is at most 16 characters and a "\\"
            raise ValueError(f"more than {MAX_POLYGON_POINTS} points")
        try:
            value = value.decode("ascii").split("\\")
        except UnicodeDecodeError:
            raise ValueError("ContourData is not text numbers") from None
    elif isinstance(value, (str, int, float)):  # one value, already converted by pydicom
        value = [value]
    if len(value) > 3 * MAX_POLYGON_POINTS:
        raise ValueError(f"more than {MAX_POLYGON_POINTS} points")
    data = finite_array(value, "ContourData")
    if data.size and np.abs(data).max() > _MAX_MM:
        raise ValueError(f"a point {np.abs(data).max():g} mm from the origin")
    return data


def _referenced_series(dataset) -> str:
    """The series the contours were drawn on (Referenced Frame of Reference > RT Referenced Study
    > RT Referenced Series), "" when the file does not say."""
    for frame in dataset.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                if "SeriesInstanceUID" in series:
                    return str(series.SeriesInstanceUID)
    return ""
