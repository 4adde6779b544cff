"""A detector's boxes as a DICOM SR (viewer.io.detection_sr): read back with plain pydicom (the
content tree walked by hand) and with the module's own reader (highdicom), on a film and on a
slice of a CT series, anonymised and not; what a report cannot hold is refused with the reason."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

from viewer.io import discover, load_series
from viewer.io.detection_sr import ReportedBox, read_detection_report, write_detection_report
from viewer.io.dicom_derived import anonymized_uid
from viewer.resources import resource_path

CHEST = resource_path("samples", "dicom", "cxr_0001.dcm")
HEAD_CT = resource_path("samples", "dicom", "ct_0001")
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
BOXES = [
    ReportedBox((10.5, 20.25, 300.0, 400.75), "nodule", 0.91, 0),
    ReportedBox((0.0, 0.0, 64.0, 32.0), "effusion", 0.5, 2),
    ReportedBox((5.0, 6.0, 7.0, 8.0), "an unknown finding", 0.125, 5),
]


def open_image(path):
    return load_series(discover([path]).series[0])


def groups_by_hand(ds) -> list[dict]:
    """Each measurement group of the report as pydicom sees it: its tracking identifier, finding,
    region's graphic type and points, referenced image and frame, and numeric values by code."""
    found = []

    def walk(items):
        for item in items:
            name = item.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in item else ""
            if item.ValueType == "CONTAINER" and name == "125007":  # Measurement Group
                found.append(group_of(item.ContentSequence))
            elif "ContentSequence" in item:
                walk(item.ContentSequence)

    def group_of(items) -> dict:
        group: dict = {"values": {}}
        for item in items:
            code = item.ConceptNameCodeSequence[0].CodeValue
            if code == "112039":  # Tracking Identifier
                group["tracking"] = item.TextValue
            elif code == "121071":  # Finding
                group["finding"] = item.ConceptCodeSequence[0]
            elif item.ValueType == "SCOORD":
                group["graphic"] = item.GraphicType
                group["points"] = np.asarray(item.GraphicData, float).reshape(-1, 2)
                ref = item.ContentSequence[0].ReferencedSOPSequence[0]
                group["image"] = (ref.ReferencedSOPInstanceUID, int(ref.get("ReferencedFrameNumber", 1) or 1))
            elif code == "111001":  # Algorithm Name
                group["algorithm"] = item.TextValue
            elif item.ValueType == "NUM":
                named = [i.TextValue for i in item.get("ContentSequence", []) if i.ValueType == "TEXT"]
                group["score_algorithm"] = named[0] if named else None
                value = item.MeasuredValueSequence[0]
                unit = value.MeasurementUnitsCodeSequence[0].CodeValue
                group["values"][code] = (float(value.NumericValue), unit)
        return group

    walk(ds.ContentSequence)
    return found


@pytest.mark.parametrize("anonymize", [False, True])
def test_every_box_is_a_closed_rectangle_with_its_finding_and_score(tmp_path, anonymize):
    image = open_image(CHEST)
    out = write_detection_report(image, 0, BOXES, tmp_path / "sr.dcm", "toy detector", anonymize=anonymize)
    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == COMPREHENSIVE_3D_SR and ds.Modality == "SR"
    assert ds.SeriesDescription == "Model boxes: toy detector"
    source = pydicom.dcmread(CHEST)
    uid = image.frames[0].sop_instance_uid
    if anonymize:
        assert str(ds.PatientName) != str(source.PatientName) and ds.PatientID != source.PatientID
        assert ds.StudyInstanceUID == anonymized_uid(source.StudyInstanceUID)
        uid = anonymized_uid(uid)
    else:
        assert ds.PatientID == source.PatientID and ds.StudyInstanceUID == source.StudyInstanceUID
    groups = groups_by_hand(ds)
    assert len(groups) == len(BOXES)
    for group, box in zip(groups, BOXES, strict=True):
        x0, y0, x1, y1 = box.box
        assert group["graphic"] == "POLYLINE"
        np.testing.assert_allclose(group["points"], [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
        assert group["image"] == (uid, 1)
        assert group["tracking"] == f"box {box.index} {box.label}"
        assert group["values"] == {"122157": (pytest.approx(box.score), "1")}  # Probability, unit 1
    # SNOMED CT findings; a label the table does not know is a Lesion.
    assert [(g["finding"].CodingSchemeDesignator, g["finding"].CodeMeaning) for g in groups] == [
        ("SCT", "Nodule"),
        ("SCT", "Pleural effusion"),
        ("SCT", "Lesion"),
    ]
    # The model is the observer (a device) and the algorithm of every group: the boxes are automatic.
    assert {(g["algorithm"], g["score_algorithm"]) for g in groups} == {("toy detector", "toy detector")}
    observers = [
        item
        for item in ds.ContentSequence
        if item.ConceptNameCodeSequence[0].CodeValue == "121005"  # Observer Type
    ]
    assert observers[0].ConceptCodeSequence[0].CodeValue == "121007"  # Device
    # The module's own reader gives back what was written.
    assert [r.box for r in read_detection_report(out)] == BOXES
    assert {r.sop_instance_uid for r in read_detection_report(out)} == {uid}


def test_a_slice_of_a_series_is_referenced_as_the_slice_explained(tmp_path):
    image = open_image(HEAD_CT)
    frame = image.n_frames // 2
    out = write_detection_report(image, frame, BOXES[:1], tmp_path / "sr.dcm", "ct detector")
    (group,) = groups_by_hand(pydicom.dcmread(out))
    assert group["image"] == (image.frames[frame].sop_instance_uid, image.frames[frame].frame_index + 1)


def test_what_a_report_cannot_hold_is_refused_with_the_reason(tmp_path):
    png = tmp_path / "film.png"
    PILImage.fromarray(np.zeros((40, 50), np.uint8)).save(png)
    with pytest.raises(ValueError, match="only DICOM"):
        write_detection_report(open_image(png), 0, BOXES, tmp_path / "a.dcm", "m")
    with pytest.raises(ValueError, match="no box"):
        write_detection_report(open_image(CHEST), 0, [], tmp_path / "b.dcm", "m")
    (tmp_path / "c.dcm").write_bytes(b"x")
    with pytest.raises(FileExistsError):
        write_detection_report(open_image(CHEST), 0, BOXES, tmp_path / "c.dcm", "m")
    with pytest.raises(ValueError, match=r"c\.dcm: not a DICOM SR"):
        read_detection_report(tmp_path / "c.dcm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.dcm", "film.png"]
