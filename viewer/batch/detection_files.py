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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from viewer.io.atomic import write_bytes_new
from viewer.io.regions import Annotation


@dataclass(frozen=True)
class Matching:
    """Model boxes matched to radiologist boxes on one frame (see the module's docstring)."""

    matched: list[int | None]  # per model box: the radiologist box it matched, or None
    ious: list[float | None]
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float | None:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else None

    @property
    def recall(self) -> float | None:
        truth = self.true_positives + self.false_negatives
        return self.true_positives / truth if truth else None

    def counts(self) -> dict:
        return {
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "false_negatives": self.false_negatives,
            "precision": None if self.precision is None else round(self.precision, 4),
            "recall": None if self.recall is None else round(self.recall, 4),
        }


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes ``x0, y0, x1, y1`` (0 for empty ones)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def match_boxes(
    boxes: Sequence[Sequence[float]],
    labels: Sequence[str],
    truth: Sequence[tuple[Sequence[float], str]],
    iou_threshold: float = 0.5,
) -> Matching:
    """Greedy matching of model ``boxes`` (highest score first) to radiologist boxes ``truth``
    ``(box, model label)``: each model box takes the unmatched radiologist box of its label with the
    largest IoU, if at least ``iou_threshold``."""
    taken: set[int] = set()
    matched: list[int | None] = []
    ious: list[float | None] = []
    for box, label in zip(boxes, labels, strict=True):
        best, best_iou = None, iou_threshold
        for j, (other, other_label) in enumerate(truth):
            if j in taken or other_label != label:
                continue
            overlap = box_iou(box, other)
            if overlap >= best_iou:
                best, best_iou = j, overlap
        matched.append(best)
        ious.append(None if best is None else round(best_iou, 4))
        if best is not None:
            taken.add(best)
    hits = len(taken)
    return Matching(matched, ious, hits, len(matched) - hits, len(truth) - hits)


def radiologist_boxes(
    image, frame: int, annotations: Sequence[Annotation], matcher
) -> list[tuple[list, str]]:
    """Each annotated region on ``frame`` of a label the model has, as ``(box, model label)``: the
    region's bounding box in native pixels (edges: a one-pixel region at 3 is ``[3, 4)``)."""
    out: list[tuple[list, str]] = []
    for annotation in annotations:
        for region in annotation.regions:
            for label in matcher.match(region.label):
                mask = Annotation(annotation.source, [region]).mask(image, label, matcher)[frame]
                if mask.any():
                    ys, xs = np.nonzero(mask)
                    out.append(([int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1], label))
    return out


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


__all__ = ["Matching", "box_iou", "match_boxes", "radiologist_boxes", "write_detections"]
