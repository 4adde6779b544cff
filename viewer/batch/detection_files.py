"""What ``explain`` writes beside the maps of a detection model: its boxes, their maps, and how they
match the radiologists' boxes.

``detections.json`` is a list, one entry per box the model found at or above the manifest's
``detection.score_threshold`` on the frame explained, highest score first::

    [{"box": [x0, y0, x1, y1], "label": "nodule", "score": 0.91, "index": 0,
      "maps": {"gradcam": "gradcam_box0.npy"}, "annotation": 0, "iou": 0.72}]

``box`` is in the image's own pixels (continuous coordinates: ``[0, 0, columns, rows]`` is the
whole image); ``index`` is the box's rank among everything the detector output (the ``box`` column
of ``metrics.csv``); ``maps`` names each method's map of the box (its preview beside it);
``annotation`` the radiologist box it matched (an index into ``detection_matching.json``'s
``annotations``) and ``iou`` their overlap, both null when it matched none.

``detection_matching.json`` holds the radiologists' boxes of the model's labels on that frame and
the counts at the threshold: a box matches the unmatched radiologist box of its label with the
largest IoU at or above ``detection.iou_threshold`` (0.5 by default), boxes taken highest score
first, as PASCAL VOC's evaluation matches them; precision = matched / model boxes, recall =
matched / radiologist boxes (null where there are none). A radiologist's box is each annotated
region's bounding box (a box annotation is its own box; a mask its bounding box).

With ``explain --dicom`` the same boxes go into ``detections_sr.dcm``, a DICOM SR a PACS shows
over the film (``viewer.io.detection_sr``: a planar ROI per box, its label the finding, its score
a measurement); each entry then carries ``"dicom_sr": "detections_sr.dcm"`` (its group's tracking
identifier is ``box <index> <label>``), and ``detection_matching.json`` the same key, or
``dicom_sr_skipped`` with the reason none was written (a PNG film, no box).
"""

from __future__ import annotations

import json
from pathlib import Path

from viewer.explain.box_matching import Matching, match_boxes
from viewer.io.atomic import write_bytes_new


def write_detections(
    folder: Path,
    result,
    files: dict[int, dict[str, str]],
    truth: list[tuple[list, str]],
    score_threshold: float,
    iou_threshold: float,
    name: str = "",
    *,
    image=None,
    dicom: bool = False,
    anonymize: bool = False,
    model_name: str = "detection model",
) -> Matching:
    """``detections.json`` and ``detection_matching.json`` of ``result`` (an ``Explanation`` with
    ``detections``) into ``folder``; ``files`` maps a box's index to its maps' files by method.
    With ``dicom``, on a DICOM ``image``, the kept boxes also as a DICOM SR (``detections_sr.dcm``,
    ``viewer.io.detection_sr``): each entry then names it as ``dicom_sr``; where none can be made,
    ``detection_matching.json``'s ``dicom_sr_skipped`` says why."""
    found = result.detections
    kept = [i for i in range(len(found)) if found.scores[i] >= score_threshold]
    records = found.records()
    matching = match_boxes(
        [found.boxes[i] for i in kept], [found.labels[i] for i in kept], truth, iou_threshold
    )
    entries = [
        records[i]
        | {"index": i, "maps": files.get(i, {}), "annotation": matching.matched[n], "iou": matching.ious[n]}
        for n, i in enumerate(kept)
    ]
    report = _write_sr(folder, image, result, entries, model_name, anonymize) if dicom else {}
    if "dicom_sr" in report:
        entries = [entry | report for entry in entries]
    write_bytes_new(folder / "detections.json", json.dumps(entries, indent=1).encode())
    document = {
        "frame": result.frames[0],
        "score_threshold": score_threshold,
        "iou_threshold": iou_threshold,
        "annotations": [{"box": box, "label": label} for box, label in truth],
        **matching.counts(),
    }
    if name:
        document = {"image": name} | document
    write_bytes_new(folder / "detection_matching.json", json.dumps(document | report, indent=1).encode())
    return matching


def _write_sr(folder: Path, image, result, entries: list[dict], model_name: str, anonymize: bool) -> dict:
    """The kept boxes as a DICOM SR beside the maps' DICOM files (``{"dicom_sr": file}``), or why
    there is none (``{"dicom_sr_skipped": reason}``)."""
    # Imported here: highdicom costs start-up that a run without --dicom does not need.
    from viewer.io.detection_sr import ReportedBox, write_detection_report

    path = folder / "detections_sr.dcm"
    boxes = [ReportedBox(tuple(e["box"]), e["label"], e["score"], e["index"]) for e in entries]
    try:
        if image is None:
            raise ValueError("no image was given to reference")
        write_detection_report(image, result.frames[0], boxes, path, model_name, anonymize=anonymize)
    except ValueError as exc:
        return {"dicom_sr_skipped": str(exc)}
    return {"dicom_sr": path.name}


__all__ = ["write_detections"]
