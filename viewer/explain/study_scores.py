"""One study scored against its annotations: the rows of a data-set evaluation and the pictures of
its scored maps. The unit of work of ``evaluate`` (in this process or on a cluster worker, see
``viewer.batch``) and of the comparison panel's folder-wide scores, so both give the same numbers."""

from __future__ import annotations

from functools import partial

import numpy as np

from viewer.explain import explain, get_method
from viewer.explain.box_matching import radiologist_boxes
from viewer.explain.comparison import map_agreement
from viewer.explain.detection_scores import FrameBoxes, box_rows, match_frames
from viewer.explain.evaluation import MODEL_MASK, RADIOLOGISTS, Truth, map_scores, reader_agreement, truths
from viewer.explain.localization import dice, iou
from viewer.io.loader import load_series
from viewer.io.overlay import annotated_thumbnail


def evaluate_one(
    model, series, name, annotations, methods, seed, on_progress=None, cancel=None
) -> tuple[list[dict], list[tuple]]:
    """The rows of one image: every annotated label x method, the radiologists' agreement, and
    the false-positive localizations (a segmenter's masks, a detector's boxes: their own rows);
    and per scored map ``(label, method, IoU, draw)``, where ``draw()`` makes its picture for the
    report."""
    image = load_series(series)
    matcher = model.manifest.label_matcher()
    annotated = [a for a in annotations if a.matches(image)]
    found = truths(image, annotated, matcher)
    prediction = model.predict(image)
    probability = {
        label: float(prediction.probabilities[:, i].max()) for i, label in enumerate(prediction.labels)
    }
    rows: list[dict] = []
    pictures: list[tuple] = []
    boxes = None
    if prediction.detections is not None:  # a detector: its boxes against the radiologists'
        spec = model.manifest.detection
        truth = radiologist_boxes(image, prediction.frames, annotated, matcher)
        boxes = match_frames(prediction, truth, spec.iou_threshold if spec is not None else 0.5)
        names = {label: t.annotation_labels for label, t in found.items()}
        rows += box_rows(name, boxes, names)
    if found:
        result = explain(
            model,
            image,
            [get_method(m) for m in methods],
            targets=list(found),
            seed=seed,
            on_progress=on_progress,
            cancel=cancel,
        )
        agreements = map_agreement(result)  # the Compare panel's numbers for the same maps
        for smap in result.maps:
            truth = found[smap.target]
            if boxes is not None:  # a box's map, against the radiologist box it matched
                truth, extra = _box_truth(result, smap, boxes, truth)
                if truth is None:
                    rows.append(_row(name, smap.target, smap.method, probability, (), **extra))
                    continue
            else:
                extra = {}
            scores = map_scores(smap.array, truth) | {"agreement": agreements.get(id(smap))} | extra
            rows.append(_row(name, smap.target, smap.method, probability, truth.annotation_labels, **scores))
            if scores["iou"] is not None:
                draw = partial(annotated_thumbnail, image, smap.array, truth.union, smap.convention)
                pictures.append((smap.target, smap.method, scores["iou"], draw))
    for label, truth in found.items():
        agreement = reader_agreement(truth)
        if agreement is not None:
            rows.append(
                _row(
                    name,
                    label,
                    RADIOLOGISTS,
                    probability,
                    truth.annotation_labels,
                    iou=agreement["iou"],
                    hit=agreement["hit"],
                )
            )
    if prediction.masks is not None:  # a segmenter: its own masks against the annotation
        rows += _mask_rows(name, prediction, found, probability)
    present = 0.5
    if boxes is not None:  # a detector's label is predicted where a box reaches its threshold
        present = model.manifest.detection.score_threshold if model.manifest.detection is not None else 0.5
    for label in model.manifest.labels:
        if label not in found and probability[label] >= present:  # predicted, not annotated
            rows += [_row(name, label, m, probability, (), false_positive=True) for m in methods]
    return rows, pictures


def _mask_rows(name, prediction, found, probability) -> list[dict]:
    """A ``model_mask`` row per annotated label: the Dice and IoU of the model's own mask of it
    against the annotation's union, over the frames predicted (a segmenter is scored as a
    segmenter first; its maps' rows then say why)."""
    rows = []
    for k, label in enumerate(prediction.labels):
        truth = found.get(label)
        if truth is None:
            continue
        ours, theirs = prediction.masks[:, k], truth.union[prediction.frames]
        scores = {"iou": iou(ours, theirs), "dice": dice(ours, theirs)}
        rows.append(_row(name, label, MODEL_MASK, probability, truth.annotation_labels, **scores))
    return rows


def _box_truth(result, smap, boxes: list[FrameBoxes], truth: Truth) -> tuple[Truth | None, dict]:
    """The radiologist box that ``smap``'s detector box matched, as a :class:`Truth` of its
    rectangle on the map's frame (None where the box matched none: a false positive), and the
    row's ``frame``, ``box`` and box score."""
    frame = result.frames[0]
    box, label = result.detections.boxes[smap.box], result.detections.labels[smap.box]
    extra = {
        "frame": frame,
        "box": [float(v) for v in box],
        "score": float(result.detections.scores[smap.box]),
    }
    matched = next((fb for fb in boxes if fb.frame == frame), None)
    j = None if matched is None else matched.match_of(box, label)
    if j is None:
        return None, extra | {"false_positive": True}
    x0, y0, x1, y1 = matched.truth[j][0]
    rectangle = np.zeros(smap.array.shape, bool)
    rectangle[..., y0:y1, x0:x1] = True
    return Truth(label, rectangle, annotation_labels=truth.annotation_labels), extra


def _row(image, label, method, probability, annotation_labels, **scores) -> dict:
    row = {"image": image, "label": label, "method": method, "probability": probability[label]}
    if "score" in scores:  # a box's map: the box's own score
        row["probability"] = scores["score"]
    row |= {
        k: scores.get(k) for k in ("iou", "dice", "hit", "energy", "auprc", "iou_by_threshold", "agreement")
    }
    row |= {k: scores[k] for k in ("frame", "box") if k in scores}
    row["annotation_label"] = "|".join(annotation_labels)
    row["false_positive"] = bool(scores.get("false_positive", False))
    return row
