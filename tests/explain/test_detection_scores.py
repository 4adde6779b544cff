"""A detector's boxes scored over a data set: average precision against pycocotools' COCOeval on
the same boxes, precision and recall at a threshold counted by hand, and the bootstrap over
images."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from viewer.explain.box_matching import match_boxes
from viewer.explain.detection_scores import (
    ALL_LABELS,
    MODEL_BOX,
    RADIOLOGIST_BOX,
    FrameBoxes,
    average_precision,
    box_rows,
    summarise_detections,
)

LABELS = ("nodule", "effusion")


def _data_set(seed: int, images: int = 12):
    """Random radiologist boxes, and detector boxes near some of them (found) and elsewhere
    (false positives), with scores that favour the found ones: a realistic mix of hits, misses
    and duplicates."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(images):
        truth, found = [], []
        for _ in range(rng.integers(0, 4)):
            x, y = rng.uniform(0, 400, 2)
            w, h = rng.uniform(20, 120, 2)
            label = LABELS[rng.integers(0, 2)]
            truth.append(([x, y, x + w, y + h], label))
            for _ in range(rng.integers(0, 3)):  # 0-2 detections around it (one may be a duplicate)
                jitter = rng.normal(0, 0.15 * min(w, h), 4)
                box = [x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]]
                found.append((box, label if rng.random() < 0.85 else LABELS[1 - LABELS.index(label)]))
        for _ in range(rng.integers(0, 4)):  # boxes where nobody drew one
            x, y = rng.uniform(0, 400, 2)
            found.append(
                ([x, y, x + rng.uniform(10, 80), y + rng.uniform(10, 80)], LABELS[rng.integers(0, 2)])
            )
        scores = rng.uniform(0.05, 1.0, len(found))
        out.append((truth, found, scores))
    return out


def _rows(data, iou_threshold=0.5) -> list[dict]:
    rows = []
    for k, (truth, found, scores) in enumerate(data):
        order = np.argsort(-scores, kind="stable")
        boxes = np.asarray([found[i][0] for i in order], np.float64).reshape(-1, 4)
        labels = tuple(found[i][1] for i in order)
        matching = match_boxes(list(boxes), labels, truth, iou_threshold)
        frame = FrameBoxes(0, boxes, labels, scores[order], truth, matching.matched, matching.ious)
        rows += box_rows(f"img{k}", [frame], {})
    return rows


def coco_ap(data, label: str, iou_threshold=0.5, labels=LABELS) -> float:
    """pycocotools' AP of one category, one IoU threshold, all areas, every box of an image;
    ``data`` per image ``(truth [(box, label)], found [(box, label)], scores)``."""
    images = [{"id": k + 1, "width": 600, "height": 600} for k in range(len(data))]
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(labels)]
    gts, dts = [], []
    for k, (truth, found, scores) in enumerate(data):
        for box, name in truth:
            w, h = box[2] - box[0], box[3] - box[1]
            gts.append(
                {"id": len(gts) + 1, "image_id": k + 1, "category_id": labels.index(name) + 1,
                 "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0}
            )  # fmt: skip
        for (box, name), score in zip(found, scores, strict=True):
            w, h = box[2] - box[0], box[3] - box[1]
            dts.append(
                {"image_id": k + 1, "category_id": labels.index(name) + 1,
                 "bbox": [box[0], box[1], w, h], "score": float(score)}
            )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {"images": images, "categories": categories, "annotations": gts}
        truth.createIndex()
        found = truth.loadRes(dts) if dts else COCO()
        evaluation = COCOeval(truth, found, "bbox")
        evaluation.params.iouThrs = np.array([iou_threshold])
        evaluation.params.maxDets = [1000]
        evaluation.params.areaRng = [[0, 1e10]]
        evaluation.params.areaRngLbl = ["all"]
        evaluation.params.catIds = [labels.index(label) + 1]
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][0, :, 0, 0, 0]  # IoU, recall levels, category, area, dets
    return float(precision[precision > -1].mean())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("iou_threshold", [0.5, 0.3])
def test_average_precision_equals_pycocotools(seed, iou_threshold):
    data = _data_set(seed)
    rows = _rows(data, iou_threshold)
    summary = {
        r["label"]: r
        for r in summarise_detections(rows, score_threshold=0.5, iou_threshold=iou_threshold, n=0)
    }
    for label in LABELS:
        ours = summary[label]["ap"]
        assert ours == pytest.approx(coco_ap(data, label, iou_threshold), abs=1e-9), (seed, label)
    assert summary[ALL_LABELS]["ap"] == pytest.approx(np.mean([summary[lb]["ap"] for lb in LABELS]))


def test_counts_at_the_threshold_are_the_matching_of_the_boxes_kept():
    """At a threshold, the counts equal a fresh matching of only the boxes at or above it: the
    greedy matching in score order makes one matching of every box enough."""
    data = _data_set(5, images=20)
    rows = _rows(data)
    for threshold in (0.2, 0.5, 0.8):
        summary = {
            r["label"]: r
            for r in summarise_detections(rows, score_threshold=threshold, iou_threshold=0.5, n=0)
        }
        for label in LABELS:
            tp = fp = n_truth = 0
            for truth, found, scores in data:
                kept = [
                    i
                    for i in np.argsort(-scores, kind="stable")
                    if scores[i] >= threshold and found[i][1] == label
                ]
                ours = [t for t in truth if t[1] == label]
                m = match_boxes([found[i][0] for i in kept], [label] * len(kept), ours, 0.5)
                tp, fp, n_truth = tp + m.true_positives, fp + m.false_positives, n_truth + len(ours)
            row = summary[label]
            assert (row["true_positives"], row["false_positives"], row["radiologist_boxes"]) == (
                tp,
                fp,
                n_truth,
            )
            assert row["false_negatives"] == n_truth - tp
            assert row["precision"] == pytest.approx(tp / (tp + fp)) and row["recall"] == pytest.approx(
                tp / n_truth
            )


def test_rows_say_which_boxes_matched():
    truth = [([10, 10, 50, 50], "nodule"), ([100, 100, 140, 160], "effusion")]
    boxes = np.array([[12, 11, 50, 52], [300, 300, 320, 330], [11, 10, 49, 50]], np.float64)
    labels, scores = ("nodule", "nodule", "nodule"), np.array([0.9, 0.6, 0.4])
    m = match_boxes(list(boxes), labels, truth, 0.5)
    rows = box_rows(
        "a", [FrameBoxes(3, boxes, labels, scores, truth, m.matched, m.ious)], {"nodule": ("Nodule",)}
    )
    model = [r for r in rows if r["method"] == MODEL_BOX]
    radiologist = [r for r in rows if r["method"] == RADIOLOGIST_BOX]
    assert [r["hit"] for r in model] == [1.0, 0.0, 0.0]  # the duplicate at 0.4 matches nothing
    assert [r["false_positive"] for r in model] == [False, True, True]
    assert model[0]["iou"] > 0.8 and model[1]["iou"] is None
    # The effusion was missed; scores are written in full (a string the file keeps as it is).
    assert [r["probability"] for r in radiologist] == ["0.9", None]
    assert all(r["frame"] == 3 for r in rows) and model[0]["box"] == [12.0, 11.0, 50.0, 52.0]
    assert model[0]["annotation_label"] == "Nodule"


def test_average_precision_edges():
    assert np.isnan(average_precision(np.array([0.9]), np.array([False]), 0))
    assert average_precision(np.array([]), np.array([], bool), 3) == 0.0
    assert average_precision(np.array([0.9, 0.8]), np.array([True, True]), 2) == pytest.approx(1.0)
    # A weight of 2 counts the box twice, as a bootstrap resample that drew its image twice.
    twice = average_precision(np.array([0.9, 0.8, 0.8]), np.array([True, False, False]), 1)
    assert average_precision(np.array([0.9, 0.8]), np.array([True, False]), 1, np.array([1.0, 2.0])) == twice


def test_bootstrap_intervals_hold_the_estimate_and_repeat_with_the_seed():
    rows = _rows(_data_set(7, images=30))
    first = summarise_detections(rows, score_threshold=0.5, iou_threshold=0.5, n=200, seed=3)
    again = summarise_detections(rows, score_threshold=0.5, iou_threshold=0.5, n=200, seed=3)
    assert first == again
    for row in first:
        for key in ("precision", "recall", "ap"):
            assert row[f"{key}_low"] <= row[key] + 1e-9 <= row[f"{key}_high"] + 2e-9, (row["label"], key)
            assert row[f"{key}_low"] < row[f"{key}_high"]
    # Other rows of per_image.csv (maps, radiologists' agreement) are passed over.
    mixed = [{"image": "img0", "label": "nodule", "method": "gradcam", "iou": 0.3}, *rows]
    assert summarise_detections(mixed, score_threshold=0.5, iou_threshold=0.5, n=200, seed=3) == first
