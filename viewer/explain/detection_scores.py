"""A detection model scored against the radiologists' boxes over a data set (``saliency-viewer
evaluate`` with a ``task = "detection"`` model).

Each image adds rows to ``per_image.csv`` beside its maps' rows, two "methods" that are no maps:

- ``model_box``: each box the detector gave on a predicted frame, at every score it outputs;
  ``probability`` is the box's score, ``iou`` its overlap with the radiologist box it matched and
  ``hit`` 1 where it matched one; an unmatched box is a ``false_positive`` (empty ``iou``);
- ``radiologist_box``: each radiologist box of a model label; ``probability`` is the score of the
  box that matched it (empty where none did), ``iou`` their overlap, ``hit`` 1 where matched.

Both give the ``frame`` and the ``box`` (``x0;y0;x1;y1``, native pixels, continuous coordinates);
their scores are written in full (not to 4 decimals), so they compare with a threshold as the
network's own did.
Boxes are matched as :mod:`viewer.explain.box_matching` says, once, over every box: greedy in score
order, so at a score threshold ``t`` a radiologist box is found exactly when the box that matched
it scored at least ``t``, and the rows hold the counts at any threshold and the whole ranking.

``detection_summary.csv`` (:func:`summarise_detections`), per label and over all labels:

- at the manifest's ``detection.score_threshold``: true positives (radiologist boxes found),
  false positives (boxes at or above it that matched none), false negatives, ``precision`` =
  TP / (TP + FP) and ``recall`` = TP / radiologist boxes;
- ``ap``: average precision at the manifest's ``detection.iou_threshold``, COCO's definition as
  pycocotools' ``COCOeval`` computes it for one IoU threshold, every box area and every box of an
  image: precision made non-increasing in recall, read at the 101 recall levels 0, 0.01 ... 1
  (0 beyond the largest recall reached), and averaged (the tests compare it with pycocotools).
  Over all labels, the mean of the labels' APs (COCO's mAP; labels without a radiologist box are
  left out), and precision and recall of all boxes pooled;
- 95 % percentile bootstrap intervals: the images resampled with replacement ``n`` times, every
  number recomputed on each resample.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from viewer.explain.box_matching import match_boxes
from viewer.explain.evaluation import BOX_ROWS

MODEL_BOX, RADIOLOGIST_BOX = BOX_ROWS
DETECTION_SUMMARY = (
    "label", "images", "radiologist_boxes", "model_boxes", "true_positives", "false_positives",
    "false_negatives", "precision", "precision_low", "precision_high", "recall", "recall_low",
    "recall_high", "ap", "ap_low", "ap_high", "score_threshold", "iou_threshold",
)  # fmt: skip
ALL_LABELS = "all"
_COUNTS = (
    "images",
    "radiologist_boxes",
    "model_boxes",
    "true_positives",
    "false_positives",
    "false_negatives",
)
# COCOeval's recall levels: np.linspace(0, 1, 101).
RECALL_LEVELS = np.linspace(0.0, 1.0, 101)


@dataclass
class FrameBoxes:
    """One frame's boxes matched: the detector's (native grid, highest score first), the
    radiologists', and for each detector box the radiologist box it matched."""

    frame: int
    boxes: np.ndarray
    labels: tuple[str, ...]
    scores: np.ndarray
    truth: list[tuple[list[int], str]]
    matched: list[int | None] = field(default_factory=list)
    ious: list[float | None] = field(default_factory=list)

    def match_of(self, box: Sequence[float], label: str) -> int | None:
        """The radiologist box matched by the detector box ``box`` of ``label`` (found by its
        coordinates: a map's box is the same box, perhaps from another pass of the network)."""
        for i, (ours, our_label) in enumerate(zip(self.boxes, self.labels, strict=True)):
            if our_label == label and np.allclose(ours, box, atol=1e-3):
                return self.matched[i]
        return None


def match_frames(prediction, truth: dict[int, list], iou_threshold: float) -> list[FrameBoxes]:
    """Every predicted frame's boxes matched to ``truth`` (per frame, from
    :func:`viewer.explain.box_matching.radiologist_boxes`)."""
    out = []
    for frame, found in zip(prediction.frames, prediction.detections, strict=True):
        order = np.argsort(-found.scores, kind="stable")  # highest first, as matching requires
        boxes, scores = found.boxes[order], found.scores[order]
        labels = tuple(found.labels[i] for i in order)
        matching = match_boxes(list(boxes), labels, truth[frame], iou_threshold)
        out.append(FrameBoxes(frame, boxes, labels, scores, truth[frame], matching.matched, matching.ious))
    return out


def box_rows(
    name: str, frames: list[FrameBoxes], annotation_labels: dict[str, tuple[str, ...]]
) -> list[dict]:
    """The ``model_box`` and ``radiologist_box`` rows of one image (see the module's docstring)."""
    rows = []
    for fb in frames:
        found_by: dict[int, int] = {}
        for i, (label, score) in enumerate(zip(fb.labels, fb.scores, strict=True)):
            j = fb.matched[i]
            if j is not None:
                found_by[j] = i
            rows.append(
                _box_row(
                    name, fb.frame, label, MODEL_BOX, fb.boxes[i], float(score), fb.ious[i], j is not None
                )
                | {"annotation_label": "|".join(annotation_labels.get(label, ()))}
            )
        for j, (box, label) in enumerate(fb.truth):
            i = found_by.get(j)
            score = None if i is None else float(fb.scores[i])
            row = _box_row(
                name,
                fb.frame,
                label,
                RADIOLOGIST_BOX,
                box,
                score,
                None if i is None else fb.ious[i],
                i is not None,
            )
            rows.append(
                row
                | {"false_positive": False, "annotation_label": "|".join(annotation_labels.get(label, ()))}
            )
    return rows


def _box_row(name, frame, label, kind, box, score, overlap, hit) -> dict:
    return {
        "image": name,
        "label": label,
        "method": kind,
        # In full: a score read back must compare with the threshold as the network's did (the
        # file's usual 4 decimals would drop a box scored 0.825034 at a threshold of 0.825034).
        "probability": None if score is None else repr(float(score)),
        "iou": overlap,
        "hit": float(hit),
        "false_positive": not hit,
        "frame": frame,
        "box": [float(v) for v in box],
    }


def average_precision(
    scores: np.ndarray, true_positive: np.ndarray, n_truth: float, weights: np.ndarray | None = None
) -> float:
    """COCO's average precision of boxes ranked by ``scores`` (ties in the order given), each a
    true positive or not, against ``n_truth`` radiologist boxes; ``weights`` count each box that
    many times (a bootstrap resample). NaN without radiologist boxes."""
    if n_truth <= 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    w = np.ones(len(order)) if weights is None else np.asarray(weights, np.float64)[order]
    hits = np.asarray(true_positive, bool)[order]
    tp = np.cumsum(w * hits)
    fp = np.cumsum(w * ~hits)
    recall = tp / n_truth
    precision = tp / (tp + fp + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # COCOeval's envelope
    at = np.searchsorted(recall, RECALL_LEVELS, side="left")
    sampled = np.where(at < len(precision), precision[np.minimum(at, len(precision) - 1)], 0.0)
    return float(sampled.mean())


class _LabelBoxes:
    """One label's boxes over the data set, as flat arrays: each detector box's image, score and
    hit, each radiologist box's image and the score of the box that found it (NaN: none)."""

    def __init__(self):
        self.box_image, self.box_score, self.box_hit = [], [], []
        self.truth_image, self.truth_score = [], []

    def arrays(self):
        return (
            np.asarray(self.box_image, np.int64),
            np.asarray(self.box_score, np.float64),
            np.asarray(self.box_hit, bool),
            np.asarray(self.truth_image, np.int64),
            np.asarray(self.truth_score, np.float64),
        )


def summarise_detections(
    rows: Iterable[dict],
    *,
    score_threshold: float,
    iou_threshold: float,
    n: int = 1000,
    seed: int = 0,
    order: dict[str, int] | None = None,
) -> list[dict]:
    """The ``detection_summary.csv`` rows (see the module's docstring) from ``per_image.csv``'s
    ``model_box`` and ``radiologist_box`` rows; other rows are passed over. Intervals resample the
    images in ``order`` (default: as they come)."""
    places = dict(order or {})
    by_label: dict[str, _LabelBoxes] = {}
    for row in rows:
        if row["method"] not in BOX_ROWS:
            continue
        place = places.setdefault(row["image"], len(places))
        group = by_label.setdefault(row["label"], _LabelBoxes())
        score = row.get("probability")
        score = np.nan if score in (None, "") else float(score)  # the file's, or a row as made
        if row["method"] == MODEL_BOX:
            group.box_image.append(place)
            group.box_score.append(score)
            group.box_hit.append(bool(row.get("hit")))
        else:
            group.truth_image.append(place)
            group.truth_score.append(score)
    if not by_label:
        return []
    n_images = len(places)
    data = {label: group.arrays() for label, group in sorted(by_label.items())}
    point = _measures(data, np.ones(n_images), score_threshold)
    draws: list[dict] = []
    rng = np.random.default_rng(seed)
    for _ in range(max(n, 0) if n_images > 1 else 0):
        weights = np.bincount(rng.integers(0, n_images, n_images), minlength=n_images).astype(np.float64)
        draws.append(_measures(data, weights, score_threshold))
    out = []
    for label in [*data, ALL_LABELS]:
        row = {"label": label} | {k: int(v) if k in _COUNTS else float(v) for k, v in point[label].items()}
        for key in ("precision", "recall", "ap"):
            values = np.asarray([d[label][key] for d in draws], np.float64)
            values = values[~np.isnan(values)]
            low, high = np.quantile(values, [0.025, 0.975]) if values.size > 1 else (np.nan, np.nan)
            row |= {f"{key}_low": float(low), f"{key}_high": float(high)}
        out.append(row | {"score_threshold": score_threshold, "iou_threshold": iou_threshold})
    return out


def _measures(data: dict, weights: np.ndarray, threshold: float) -> dict[str, dict]:
    """Counts, precision, recall and AP per label and over all labels, each image counted
    ``weights[image]`` times."""
    out: dict[str, dict] = {}
    totals = np.zeros(4)  # TP, FP, radiologist boxes, model boxes at the threshold
    aps = []
    for label, (box_image, box_score, box_hit, truth_image, truth_score) in data.items():
        wb, wt = weights[box_image], weights[truth_image]
        kept = box_score >= threshold
        tp = float(wt[truth_score >= threshold].sum())  # NaN (never found) compares False
        fp = float(wb[kept & ~box_hit].sum())
        n_truth, n_kept = float(wt.sum()), float(wb[kept].sum())
        ap = average_precision(box_score, box_hit, n_truth, wb)
        if not np.isnan(ap):
            aps.append(ap)
        totals += (tp, fp, n_truth, n_kept)
        images = len(np.unique(truth_image[wt > 0])) if len(truth_image) else 0
        out[label] = _counts(tp, fp, n_truth, n_kept, ap, images)
    tp, fp, n_truth, n_kept = totals
    out[ALL_LABELS] = _counts(
        tp, fp, n_truth, n_kept, float(np.mean(aps)) if aps else np.nan, int((weights > 0).sum())
    )
    return out


def _counts(tp: float, fp: float, n_truth: float, n_kept: float, ap: float, images: int) -> dict:
    return {
        "images": images,
        "radiologist_boxes": n_truth,
        "model_boxes": n_kept,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": n_truth - tp,
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / n_truth if n_truth else float("nan"),
        "ap": ap,
    }


__all__ = [
    "ALL_LABELS",
    "BOX_ROWS",
    "DETECTION_SUMMARY",
    "MODEL_BOX",
    "RADIOLOGIST_BOX",
    "FrameBoxes",
    "average_precision",
    "box_rows",
    "match_frames",
    "summarise_detections",
]
