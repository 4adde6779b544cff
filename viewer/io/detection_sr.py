"""A detection model's boxes as a DICOM SR (TID 1500 Imaging Measurement Report, Comprehensive 3D
SR, through highdicom), and back. No Qt, no torch.

A PACS shows a model's boxes only from an object it can read: each box becomes one planar ROI
measurement group (TID 1410) on the film or frame explained. Its region is a closed 5-point
POLYLINE, the rectangle's corners in the image's own pixel coordinates (DICOM's SCOORD convention
is the detections' own: ``0, 0`` the top-left corner of the top-left pixel, ``columns, rows`` the
bottom-right corner of the last one, so a box's numbers go in unchanged). The finding is the
label's SNOMED CT concept (``finding_code``: "Lesion" for a label it does not know), the score a
measurement "Probability" (DCM 122157, unit 1), and the tracking identifier ``box <index>
<label>`` names the box's index in ``detections.json`` and its label as the model spells it. The
observer is a device, the model, and every group and score names the model as its algorithm
(automatic: no person drew the boxes). The report is a new series in the film's study, the
explained image its evidence; with ``anonymize`` the evidence headers are the anonymised ones of
every other export, as the maps' DICOM files beside it have them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes

from viewer import __version__
from viewer.io.annotation_writer import finding_code
from viewer.io.dicom_derived import is_multiframe, lo, new_uid, require_dicom, source_headers
from viewer.io.image import Image
from viewer.io.measurement_sr import write_report

DETECTION_SR_SERIES_NUMBER = 9006
SCORE_CONCEPT = codes.DCM.Probability


@dataclass(frozen=True)
class ReportedBox:
    """One model box: ``x0, y0, x1, y1`` in the image's pixels, the model's label and score, and
    its index among the model's boxes (``detections.json``'s ``index``)."""

    box: tuple[float, float, float, float]
    label: str
    score: float
    index: int


def write_detection_report(
    image: Image,
    frame: int,
    boxes: Sequence[ReportedBox],
    out: Path,
    model_name: str,
    *,
    anonymize: bool = False,
) -> Path:
    """Write ``boxes`` (found on ``image``'s ``frame``) as a TID 1500 report at ``out``, never
    overwriting it; ValueError, with the reason, for what a report cannot hold (a raster film,
    no box)."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; refusing to overwrite it")
    require_dicom(image)
    if not boxes:
        raise ValueError("the model found no box at or above its score threshold: nothing to report")
    headers, numbers = source_headers(image, [frame], anonymize)
    header = headers[0]
    source = hd.sr.SourceImageForRegion(
        referenced_sop_class_uid=str(header.SOPClassUID),
        referenced_sop_instance_uid=str(header.SOPInstanceUID),
        referenced_frame_numbers=[numbers[0] + 1] if is_multiframe(header) else None,
    )
    algorithm = hd.sr.AlgorithmIdentification(name=lo(model_name), version=__version__)
    groups = [_group(box, source, algorithm) for box in boxes]
    return write_report(
        image, headers, groups, out, "detection-sr", DETECTION_SR_SERIES_NUMBER, model_name,
        f"Model boxes: {model_name}",
    )  # fmt: skip


def _group(box: ReportedBox, source, algorithm):
    x0, y0, x1, y1 = (float(v) for v in box.box)
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])  # closed: ends where it began
    score = hd.sr.Measurement(
        name=SCORE_CONCEPT, value=float(box.score), unit=codes.UCUM.NoUnits, algorithm_id=algorithm
    )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=new_uid("tracking"), identifier=lo(f"box {box.index} {box.label}")
        ),
        referenced_region=hd.sr.ImageRegion(
            graphic_type="POLYLINE", graphic_data=corners, source_image=source
        ),
        finding_type=finding_code(box.label),
        algorithm_id=algorithm,
        measurements=[score],
    )


@dataclass(frozen=True)
class ReadBox:
    """A box read back from a report: as written, and the image (SOP instance, 1-based frame) it
    is on."""

    box: ReportedBox
    finding: str  # the finding's code meaning
    sop_instance_uid: str
    frame_number: int


def read_detection_report(path: Path | str) -> list[ReadBox]:
    """The boxes of a report written by :func:`write_detection_report` (a closed 5-point polyline
    per group; other groups are left out). ValueError naming the file when it is no such report."""
    path = Path(path)
    try:
        groups = hd.sr.srread(path).content.get_planar_roi_measurement_groups()
    except Exception as exc:  # pydicom and highdicom raise many kinds on a file that is not an SR
        raise ValueError(f"{path.name}: not a DICOM SR measurement report ({exc})") from None
    out = []
    for group in groups:
        region = group.roi
        identifier = str(group.tracking_identifier or "").split(" ", 2)
        if region is None or len(identifier) < 3 or identifier[0] != "box":
            continue
        points = np.asarray(region.value, np.float64).reshape(-1, 2)
        scores = group.get_measurements(name=SCORE_CONCEPT)
        if len(points) != 5 or not scores:
            continue
        reference = region.ContentSequence[0].ReferencedSOPSequence[0]  # its SELECTED FROM image
        box = ReportedBox(
            tuple(float(v) for v in (*points.min(axis=0), *points.max(axis=0))),
            identifier[2],
            float(scores[0].value),
            int(identifier[1]),
        )
        finding = group.finding_type
        out.append(
            ReadBox(
                box,
                str(finding.meaning) if finding is not None else "",
                str(reference.ReferencedSOPInstanceUID),
                int(reference.get("ReferencedFrameNumber", 1) or 1),
            )
        )
    return out


__all__ = [
    "DETECTION_SR_SERIES_NUMBER",
    "ReadBox",
    "ReportedBox",
    "read_detection_report",
    "write_detection_report",
]
