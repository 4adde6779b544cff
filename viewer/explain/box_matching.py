"""Detected boxes matched to the radiologists' boxes, as PASCAL VOC's and COCO's evaluations match
them: boxes taken highest score first, each matching the unmatched radiologist box of its label
with the largest IoU at or above a threshold (0.5 by default). Greedy in score order, so the
matching of the boxes scored at least any threshold is the same whatever boxes scored below it:
one matching of every box gives the counts at every threshold and the precision-recall curve.

A radiologist's box is each annotated region's bounding box on the frame (a box annotation is its
own box; a mask its bounding box), in native pixels with continuous coordinates: a one-pixel region
at column 3 is ``[3, 4)``. ``explain`` writes the matching beside a detector's maps
(``viewer.batch.detection_files``); ``evaluate`` scores a data set with it
(``viewer.explain.detection_scores``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
    image, frames: Sequence[int], annotations: Sequence[Annotation], matcher
) -> dict[int, list[tuple[list[int], str]]]:
    """Per frame of ``frames``, each annotated region of a label the model has as ``(box, model
    label)``: the region's bounding box on that frame in native pixels (edges: a one-pixel region
    at 3 is ``[3, 4)``). Each region's mask is made once for all the frames."""
    out: dict[int, list[tuple[list[int], str]]] = {f: [] for f in frames}
    for annotation in annotations:
        for region in annotation.regions:
            for label in matcher.match(region.label):
                mask = Annotation(annotation.source, [region]).mask(image, label, matcher)
                for f in frames:
                    if mask[f].any():
                        ys, xs = np.nonzero(mask[f])
                        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
                        out[f].append((box, label))
    return out


__all__ = ["Matching", "box_iou", "match_boxes", "radiologist_boxes"]
