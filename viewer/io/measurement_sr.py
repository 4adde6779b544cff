"""Measurements as a DICOM SR Imaging Measurement Report (TID 1500, Comprehensive 3D SR) through
highdicom, and back. No Qt, no torch.

Each measurement is one planar ROI measurement group (TID 1410): its region as image SCOORDs on
the source frame (a 2-point polyline for a length, 3 points for an angle, a closed polyline for a
rectangle or polygon, an ELLIPSE by its two axes), or, drawn in a coronal or sagittal MPR plane,
as SCOORD3D patient coordinates in the series' frame of reference (the whole series as evidence),
and read back onto the display plane that holds them; a tracking identifier naming its kind
(``length 1``, ``ellipse 2``, ...) and its values (SNOMED CT Length, Angle, Area, Mean, Standard
Deviation, Minimum, Maximum; UCUM mm, mm2, deg, and [hnsf'U] for CT). The report is a new series
in the source study and references the measured images as evidence; with ``anonymize`` the
patient is replaced and linking UIDs hashed as in every other export, and reading it back over
the original study still finds each frame. Images without pixel spacing are refused: their
measurements would be in pixels, which SR units do not express.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes

from viewer.io.dicom_derived import (
    MANUFACTURER,
    anonymized_uid,
    is_multiframe,
    lo,
    new_uid,
    require_dicom,
    source_headers,
)
from viewer.io.dicom_writer import write_atomic
from viewer.io.image import Image
from viewer.io.measurements import KINDS, Measured, Measurement, MeasurementError
from viewer.io.mpr import MprError, Reformat

SR_SERIES_NUMBER = 9003
# The procedure a report is of, by modality (LOINC, as TID 1500 asks).
_PROCEDURES = {
    "CT": codes.LN.CTUnspecifiedBodyRegion,
    "MR": codes.LN.MRIUnspecifiedBodyRegion,
    "PT": codes.LN.PETUnspecifiedBodyRegion,
    "NM": codes.LN.NMUnspecifiedBodyRegion,
}
_VALUES = (
    ("length", codes.SCT.Length),
    ("angle", codes.SCT.Angle),
    ("area", codes.SCT.Area),
    ("mean", codes.SCT.Mean),
    ("sd", codes.SCT.StandardDeviation),
    ("minimum", codes.SCT.Minimum),
    ("maximum", codes.SCT.Maximum),
)


def write_measurement_report(
    image: Image,
    measured: Sequence[Measured],
    out: Path,
    *,
    anonymize: bool = True,
    description: str = "Measurements",
) -> Path:
    """Write ``measured`` (of ``image``) as a TID 1500 report at ``out`` (never overwritten)."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; refusing to overwrite it")
    require_dicom(image)
    if not measured:
        raise MeasurementError("there are no measurements to save")
    if not all(m.calibrated for m in measured):
        raise MeasurementError(
            "the image has no pixel spacing: its measurements are in pixels, which SR cannot hold"
        )
    planar = any(m.measurement.plane for m in measured)
    # A plane across the slices draws on all of them: the whole series is its evidence.
    frames = range(image.n_frames) if planar else sorted({m.measurement.frame for m in measured})
    headers, _numbers = source_headers(image, frames, anonymize)  # the evidence, one per file
    sources = dict(zip(dict.fromkeys(image.frames[f].source for f in frames), headers, strict=True))
    reformat = Reformat.of(image) if planar else None
    groups = [_group(image, values, number, sources, reformat) for number, values in enumerate(measured, 1)]
    return write_report(image, headers, groups, out, "sr", SR_SERIES_NUMBER, MANUFACTURER, description)


def write_report(
    image: Image, headers, groups, out: Path, kind: str, series_number: int, device: str, description: str
) -> Path:
    """A TID 1500 report of ``groups`` (planar ROI measurement groups of ``image``) at ``out``: a
    device ``device`` as the observer, ``headers`` as the evidence, a new series ``series_number``
    in the image's study; ``kind`` names the object's UIDs. Shared by the measurement report and
    a detector's boxes (``viewer.io.detection_sr``)."""
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=new_uid("observer-device"), manufacturer_name=MANUFACTURER, model_name=lo(device)
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=procedure_code(image.modality),
        imaging_measurements=groups,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=headers,
        content=report,
        series_instance_uid=new_uid(f"{kind}-series"),
        series_number=series_number,
        sop_instance_uid=new_uid(kind),
        instance_number=1,
        manufacturer=MANUFACTURER,
        series_description=lo(description),
    )
    return write_atomic(sr, out)


def procedure_code(modality: str):
    """The LOINC procedure a report of an image of ``modality`` is of (TID 1500 asks for one): the
    unspecified body region of that modality, X-ray for any other."""
    return _PROCEDURES.get(modality, codes.LN.XRUnspecifiedBodyRegion)


def _group(image: Image, values: Measured, number: int, sources: dict, reformat: Reformat | None):
    """One planar ROI group, referencing the measured frame's evidence header in ``sources`` (by
    source file, UIDs already hashed in an anonymised report), or for an MPR plane the series'
    frame of reference."""
    measurement = values.measurement
    graphic_type, data = _graphic(measurement)
    if measurement.plane:
        points = reformat.plane_to_patient(measurement.plane, measurement.frame, data)
        frame_of_reference = str(next(iter(sources.values())).FrameOfReferenceUID)
        region = hd.sr.ImageRegion3D(
            graphic_type=graphic_type, graphic_data=points, frame_of_reference_uid=frame_of_reference
        )
    else:
        info = image.frames[measurement.frame]
        header = sources[info.source]
        source = hd.sr.SourceImageForRegion(
            referenced_sop_class_uid=str(header.SOPClassUID),
            referenced_sop_instance_uid=str(header.SOPInstanceUID),
            referenced_frame_numbers=[info.frame_index + 1] if is_multiframe(header) else None,
        )
        region = hd.sr.ImageRegion(graphic_type=graphic_type, graphic_data=data, source_image=source)
    label = f" {measurement.label}" if measurement.label else ""
    units = {
        "length": codes.UCUM.Millimeter,
        "angle": codes.UCUM.Degree,
        "area": codes.UCUM.SquareMillimeter,
    }
    grey = codes.UCUM.HounsfieldUnit if values.units == "HU" else codes.UCUM.NoUnits
    items = [
        hd.sr.Measurement(name=concept, value=float(getattr(values, field)), unit=units.get(field, grey))
        for field, concept in _VALUES
        if getattr(values, field) is not None
    ]
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=new_uid("tracking"), identifier=lo(f"{measurement.kind} {number}{label}")
        ),
        referenced_region=region,
        measurements=items,
    )


def _graphic(measurement: Measurement) -> tuple[str, np.ndarray]:
    points = np.asarray(measurement.points, np.float64)
    kind = measurement.kind
    if kind in ("length", "angle"):
        return "POLYLINE", points
    if kind == "polygon":
        return "POLYLINE", np.vstack([points, points[:1]])  # closed: the last point is the first
    (x0, y0), (x1, y1) = points
    if kind == "rectangle":
        return "POLYLINE", np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
    cx, cy, horizontal, vertical = (x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0), abs(y1 - y0)
    across, down = [[x0, cy], [x1, cy]], [[cx, y0], [cx, y1]]
    # An ELLIPSE is its major axis' two end points, then its minor axis' (in image coordinates).
    return "ELLIPSE", np.array(across + down if horizontal >= vertical else down + across)


def read_measurement_report(path: Path | str, image: Image) -> list[Measurement]:
    """The measurements of a TID 1500 report (this viewer's, or another's planar ROI groups) on
    ``image``'s frames; a group on an image not in ``image`` is left out. Raises
    :class:`MeasurementError` naming the file when it is not a measurement report."""
    path = Path(path)
    try:
        sr = hd.sr.srread(path)
        groups = sr.content.get_planar_roi_measurement_groups()
    except Exception as exc:  # pydicom and highdicom raise many kinds on a file that is not an SR
        raise MeasurementError(f"{path.name}: not a DICOM SR measurement report ({exc})") from None
    frames: dict[tuple[str, int], int] = {}
    for index, info in enumerate(image.frames):
        for uid in (info.sop_instance_uid, anonymized_uid(info.sop_instance_uid)):
            frames[(uid, info.frame_index + 1)] = index
    out = []
    volume: list = []  # the image's reformat and frame of reference, once a 3-D region needs them
    for group in groups:
        region = group.roi
        if region is None:
            continue
        if isinstance(region, hd.sr.ImageRegion3D):
            volume = volume or [_volume_of(image)]
            placed = _on_plane(region, *volume[0])
            if placed is not None:
                plane, index, points = placed
                out.append(_measurement(group, _graphic_type(region), points, index, plane))
            continue
        reference = region.ContentSequence[0].ReferencedSOPSequence[0]  # its SELECTED FROM image
        number = int(reference.get("ReferencedFrameNumber", 1) or 1)
        frame = frames.get((str(reference.ReferencedSOPInstanceUID), number))
        if frame is None:
            continue
        points = np.asarray(region.value, np.float64).reshape(-1, 2)
        out.append(_measurement(group, _graphic_type(region), points, frame))
    return out


def _graphic_type(region) -> str:
    kind = region.graphic_type
    return str(kind.value if hasattr(kind, "value") else kind)


def _volume_of(image: Image) -> tuple[Reformat | None, str]:
    """The image's reformat (None: not a volume) and its frame of reference UID."""
    try:
        reformat = Reformat.of(image)
    except MprError:
        return None, ""
    headers, _numbers = source_headers(image, [0], anonymize=False)
    return reformat, str(headers[0].get("FrameOfReferenceUID", ""))


def _on_plane(region, reformat: Reformat | None, ours: str) -> tuple[str, int, np.ndarray] | None:
    """A SCOORD3D region as ``(plane, index, plane points)`` on the image's display volume, or
    None where the image is no volume of that frame of reference or no display plane holds it."""
    if reformat is None or str(region.ReferencedFrameOfReferenceUID) not in (ours, anonymized_uid(ours)):
        return None
    return reformat.patient_to_plane(np.asarray(region.value, np.float64).reshape(-1, 3))


def _measurement(group, graphic: str, points: np.ndarray, frame: int, plane: str = "") -> Measurement:
    identifier = str(group.tracking_identifier or "")
    named = identifier.split(" ", 1)[0]
    label = identifier.split(" ", 2)[2] if identifier.count(" ") >= 2 else ""
    closed = len(points) > 2 and np.allclose(points[0], points[-1], atol=1e-3)
    if graphic == "ELLIPSE":
        xs, ys = points[:, 0], points[:, 1]
        return Measurement("ellipse", frame, ((xs.min(), ys.min()), (xs.max(), ys.max())), label, plane)
    if named == "rectangle" and closed and len(points) == 5:
        return Measurement("rectangle", frame, (tuple(points[0]), tuple(points[2])), label, plane)
    if closed:
        return Measurement("polygon", frame, tuple(map(tuple, points[:-1])), label, plane)
    kind = (
        named
        if named in KINDS and named in ("length", "angle")
        else ("length" if len(points) == 2 else "angle")
    )
    return Measurement(kind, frame, tuple(map(tuple, points)), label, plane)
