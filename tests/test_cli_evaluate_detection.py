"""``saliency-viewer evaluate`` with a detection model: every box against the radiologists' boxes
(``model_box`` / ``radiologist_box`` rows), precision, recall and COCO's AP per label in
detection_summary.csv (AP checked against pycocotools on the same boxes), and each box's maps
scored against the radiologist box it matched."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from tests.explain.test_detection_scores import coco_ap
from tests.test_cli_explain_detection import LABELS, detector_and_radiologists
from viewer.cli import main
from viewer.explain.box_matching import box_iou
from viewer.resources import resource_path

pytestmark = pytest.mark.timeout(600)
FILM = resource_path("samples", "dicom", "cxr_0001.dcm")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detector_evaluate")
    boxes, labels, scores, threshold, top = detector_and_radiologists(folder)
    # Two films: the sample, annotated with the model's top box and a box it did not find, and a
    # copy of it nobody annotated (every box of it a false positive).
    films = folder / "films"
    films.mkdir()
    shutil.copy(FILM, films / "cxr_0001.dcm")
    shutil.copy(FILM, films / "copy.dcm")
    out = folder / "out"
    args = ["evaluate", str(films), "--model", str(folder / "manifest.toml"), "--methods", "gradcam"]
    args += ["--annotation", str(folder / "vindr.csv"), "--bootstrap", "50", "--quiet", "--out", str(out)]
    assert main(args) == 0
    return out, args, (boxes, labels, scores, threshold, top)


def _rows(out):
    return list(csv.DictReader((out / "per_image.csv").open()))


def test_every_box_of_every_film_is_a_row_and_the_radiologists_boxes_say_what_found_them(run):
    out, _, (boxes, _labels, scores, _, top) = run
    rows = _rows(out)
    images = sorted({r["image"] for r in rows if r["method"] == "model_box"})
    assert len(images) == 2
    for image in images:
        ours = [r for r in rows if r["image"] == image and r["method"] == "model_box"]
        assert len(ours) == len(scores)
        np.testing.assert_allclose([float(r["probability"]) for r in ours], scores, atol=1e-4)
        np.testing.assert_allclose([[float(v) for v in r["box"].split(";")] for r in ours], boxes, atol=1e-3)
    truth = [r for r in rows if r["method"] == "radiologist_box"]
    assert [r["box"] for r in truth] == [
        ";".join(f"{v:.4f}" for v in top),
        "900.0000;900.0000;1000.0000;1000.0000",
    ]
    # The top box found the radiologist's copy of it; the unannotated copy's boxes found nothing.
    assert float(truth[0]["probability"]) == pytest.approx(float(scores[0]), abs=1e-4)
    assert float(truth[0]["iou"]) > 0.95 and truth[0]["hit"] == "1.0000"
    copy = [r for r in rows if r["image"] != "cxr_0001" and r["method"] == "model_box"]
    assert all(r["false_positive"] == "1" and r["iou"] == "" for r in copy)


def test_detection_summary_counts_and_ap_against_pycocotools(run):
    out, _, (boxes, labels, scores, threshold, top) = run
    summary = {r["label"]: r for r in csv.DictReader((out / "detection_summary.csv").open())}
    assert set(summary) == {*set(labels), "all"}
    label = labels[0]
    far = [900, 900, 1000, 1000]
    kept = [i for i in np.flatnonzero(scores >= threshold) if labels[i] == label]
    found_far = any(box_iou(boxes[i], far) >= 0.5 for i in kept[1:])
    tp = 1 + int(found_far)
    row = summary[label]
    assert (int(row["true_positives"]), int(row["radiologist_boxes"])) == (tp, 2)
    assert int(row["false_positives"]) == 2 * len(kept) - tp  # the copy's boxes count too
    assert float(row["recall"]) == pytest.approx(tp / 2, abs=1e-4)
    assert float(row["precision"]) == pytest.approx(tp / (2 * len(kept)), abs=1e-4)
    # The same boxes through pycocotools (the copy is an image with no radiologist box), the
    # images in per_image.csv's order: the copy's scores tie with the film's, and both break ties
    # by the order of the images.
    found = list(zip([list(b) for b in boxes], labels, strict=True))
    data = {"cxr_0001": ([(top, label), (far, label)], found, scores), "copy": ([], found, scores)}
    data = [data[image] for image in dict.fromkeys(r["image"] for r in _rows(out))]
    assert float(row["ap"]) == pytest.approx(coco_ap(data, label, 0.5, LABELS), abs=1e-4)
    assert float(row["ap_low"]) <= float(row["ap"]) <= float(row["ap_high"])
    assert "Detected boxes" in (out / "report.html").read_text()


def test_a_boxs_map_is_scored_against_the_radiologist_box_it_matched(run):
    out, _, (_, labels, scores, threshold, _top) = run
    maps = [r for r in _rows(out) if r["method"] == "gradcam" and r["image"] == "cxr_0001"]
    kept = [i for i in np.flatnonzero(scores >= threshold) if labels[i] == labels[0]]
    assert len(maps) == len(kept)  # one map per box of the annotated label at the threshold
    scored = [r for r in maps if r["iou"] != ""]
    assert scored and float(scored[0]["probability"]) == pytest.approx(float(scores[0]), abs=1e-4)
    assert all(r["false_positive"] == "0" for r in scored)
    assert all(r["false_positive"] == "1" for r in maps if r["iou"] == "")


def test_resume_adds_no_box_twice(run):
    out, args, _ = run
    before = _rows(out)
    assert main([*args, "--resume"]) == 0
    assert _rows(out) == before
