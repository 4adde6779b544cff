"""``saliency-viewer explain`` with a detection manifest: detections.json (the model's boxes in the
image's own pixels, each with its maps), a metrics row per box, and the boxes matched to the
radiologists' (IoU) with precision and recall at the threshold."""

from __future__ import annotations

import csv
import json

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image as PILImage
from safetensors.torch import save_file

from tests.explain.detectors import detector
from viewer.cli import main
from viewer.explain.box_matching import box_iou, match_boxes
from viewer.inference.model import LoadedModel
from viewer.io import discover
from viewer.io.loader import load_series
from viewer.resources import resource_path

pytestmark = pytest.mark.timeout(600)
LABELS = ("nodule", "consolidation")
FILM = resource_path("samples", "dicom", "cxr_0001.dcm")


def own_detections(folder):
    """The model's own boxes on the film, computed here: the network on the viewer's input
    (1024 x 1024 film, 128 x 128 input: a scale of 1/8, no letterbox border)."""
    network = detector(labels=len(LABELS))
    model = LoadedModel.from_manifest(folder / "manifest.toml", device="cpu")
    x, _ = model.prepare(load_series(discover([FILM]).series[0]), 0)
    with torch.no_grad():
        out = network(x[None])[0]
    order = np.argsort(-out["scores"].numpy(), kind="stable")
    return (
        out["boxes"].numpy()[order] * 8.0,
        [LABELS[i - 1] for i in out["labels"].numpy()[order]],
        out["scores"].numpy()[order],
    )


def detector_and_radiologists(folder):
    """The seeded detector's manifest in ``folder``, its threshold at its third best score (three
    boxes, or more on a tie, at or above it), and ``vindr.csv``: the radiologists drew the model's
    top box (as whole pixels) and one box it did not find. Returns the model's own boxes, labels
    and scores, the threshold and the top box as drawn."""
    network = detector(labels=len(LABELS))
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, folder / "w.safetensors")
    manifest = (
        f'name = "chest detector"\ntask = "detection"\nlabels = {list(LABELS)!r}\n'.replace("'", '"')
        + '[network]\narch = "fasterrcnn_mobilenet_v3_large_320_fpn"\nweights = "w.safetensors"\n'
        "in_channels = 3\n[input]\nsize = [128, 128]\n"
    )
    (folder / "manifest.toml").write_text(manifest)
    boxes, labels, scores = own_detections(folder)
    threshold = float(scores[2])
    (folder / "manifest.toml").write_text(manifest + f"[detection]\nscore_threshold = {threshold!r}\n")
    names = {"nodule": "Nodule/Mass", "consolidation": "Consolidation"}
    top = [round(float(v)) for v in boxes[0]]
    (folder / "vindr.csv").write_text(
        "image_id,rad_id,class_name,x_min,y_min,x_max,y_max\n"
        f"cxr_0001,R1,{names[labels[0]]},{','.join(map(str, top))}\n"
        f"cxr_0001,R2,{names[labels[0]]},900,900,1000,1000\n"
    )
    return boxes, labels, scores, threshold, top


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detector")
    boxes, labels, scores, threshold, _ = detector_and_radiologists(folder)
    out = folder / "out"
    args = ["explain", str(FILM), "--model", str(folder / "manifest.toml"), "--methods", "gradcam,gradient"]
    code = main([*args, "--annotation", str(folder / "vindr.csv"), "--quiet", "--out", str(out)])
    assert code == 0
    return out / "cxr_0001", (boxes, labels, scores, threshold)


def test_detections_json_is_the_models_own_output_in_native_pixels(run):
    study, (boxes, labels, scores, threshold) = run
    entries = json.loads((study / "detections.json").read_text())
    kept = np.flatnonzero(scores >= threshold)
    assert len(entries) == len(kept) >= 3
    for entry, i in zip(entries, kept, strict=True):
        assert entry["index"] == i and entry["label"] == labels[i]
        assert entry["score"] == pytest.approx(float(scores[i]), abs=1e-6)
        np.testing.assert_allclose(entry["box"], boxes[i], atol=0.02)  # rounded to 2 decimals
        # explain's target is the label of the best box (the session's top prediction): its boxes
        # have maps; the other labels' boxes are listed without (--target names others).
        explained = labels[i] == labels[0]
        assert set(entry["maps"]) == ({"gradcam", "gradient"} if explained else set())
        for method, file in entry["maps"].items():
            assert file == f"{method}_box{i}.npy"
            values = np.load(study / file)
            assert values.shape == (1024, 1024) and np.isfinite(values).all()
            assert (study / file.replace(".npy", ".png")).stat().st_size > 0
    # Different boxes, different maps: each explains its own box.
    first, second = (np.load(study / e["maps"]["gradcam"]) for e in [e for e in entries if e["maps"]][:2])
    assert not np.allclose(first, second)


def test_a_metrics_row_per_box_and_method(run):
    study, (_, labels, scores, threshold) = run
    rows = [r for r in csv.DictReader((study.parent / "metrics.csv").open()) if r["image"] == "cxr_0001"]
    explained = [i for i in np.flatnonzero(scores >= threshold) if labels[i] == labels[0]]
    assert len(explained) >= 2
    assert sorted((r["method"], int(r["box"])) for r in rows) == sorted(
        (m, int(i)) for m in ("gradcam", "gradient") for i in explained
    )
    for row in rows:
        assert float(row["probability"]) == pytest.approx(float(scores[int(row["box"])]), abs=1e-4)


def test_boxes_matched_to_the_radiologists_with_precision_and_recall(run):
    study, (boxes, labels, scores, threshold) = run
    matching = json.loads((study / "detection_matching.json").read_text())
    entries = json.loads((study / "detections.json").read_text())
    x0, y0, x1, y1 = (round(float(v)) for v in boxes[0])
    far = [900, 900, 1000, 1000]
    assert [a["box"] for a in matching["annotations"]] == [[x0, y0, x1, y1], far]
    # The top box matches the radiologist's copy of it; the far box only if another box of the
    # model's of that label overlaps it by half.
    assert entries[0]["annotation"] == 0 and entries[0]["iou"] > 0.95
    kept = np.flatnonzero(scores >= threshold)
    found_far = any(labels[i] == labels[0] and box_iou(boxes[i], far) >= 0.5 for i in kept[1:])
    hits = 1 + int(found_far)
    assert matching["true_positives"] == hits
    assert matching["false_positives"] == len(entries) - hits
    assert matching["false_negatives"] == 2 - hits
    assert matching["precision"] == pytest.approx(hits / len(entries), abs=1e-4)
    assert matching["recall"] == pytest.approx(hits / 2)


def test_greedy_matching_by_score_and_label():
    truth = [([0, 0, 10, 10], "nodule"), ([20, 20, 30, 30], "nodule"), ([0, 0, 10, 10], "effusion")]
    boxes = [[0, 0, 10, 9], [0, 0, 10, 10], [21, 21, 30, 30], [50, 50, 60, 60]]
    m = match_boxes(boxes, ["nodule", "nodule", "effusion", "nodule"], truth, 0.5)
    # The first (highest score) takes the nodule box (IoU 0.9); the second finds it taken; the
    # effusion box overlaps only a nodule box; the last overlaps nothing.
    assert m.matched == [0, None, None, None] and m.ious[0] == pytest.approx(0.9)
    assert (m.true_positives, m.false_positives, m.false_negatives) == (1, 3, 2)
    assert m.precision == 0.25 and m.recall == pytest.approx(1 / 3)
    assert match_boxes([], [], [], 0.5).precision is None


def test_dicom_boxes_are_an_sr_that_reads_back_as_detections_json(run):
    """``--dicom --anonymize``: every box of detections.json, its coordinates, label and score, is a
    group of the SR, which references the anonymised film; read back with the SR module."""
    from viewer.io.detection_sr import read_detection_report
    from viewer.io.dicom_derived import anonymized_uid

    study, _ = run
    folder = study.parent.parent
    out = folder / "out_dicom"
    args = ["explain", str(FILM), "--model", str(folder / "manifest.toml"), "--methods", "gradcam"]
    assert main([*args, "--dicom", "--anonymize", "--quiet", "--out", str(out)]) == 0
    (anonymised,) = [p for p in out.iterdir() if p.is_dir()]
    entries = json.loads((anonymised / "detections.json").read_text())
    matching = json.loads((anonymised / "detection_matching.json").read_text())
    assert matching["dicom_sr"] == "detections_sr.dcm" and {e["dicom_sr"] for e in entries} == {
        "detections_sr.dcm"
    }
    read = read_detection_report(anonymised / "detections_sr.dcm")
    assert len(read) == len(entries) >= 3
    for entry, box in zip(entries, read, strict=True):
        assert box.box.index == entry["index"] and box.box.label == entry["label"]
        assert box.box.score == pytest.approx(entry["score"], rel=1e-6)
        np.testing.assert_allclose(box.box.box, entry["box"], atol=1e-3)  # float32 in the SR
    source = load_series(discover([FILM]).series[0]).frames[0].sop_instance_uid
    assert {(b.sop_instance_uid, b.frame_number) for b in read} == {(anonymized_uid(source), 1)}
    sr = pydicom.dcmread(anonymised / "detections_sr.dcm")
    assert sr.PatientName != pydicom.dcmread(FILM).PatientName


def test_a_png_film_gets_no_sr_and_says_why(run, tmp_path):
    """The film as a PNG: its boxes and maps as before, the SR skipped with the reason."""
    study, _ = run
    folder = study.parent.parent
    film = load_series(discover([FILM]).series[0]).frame(0).astype(np.float64)
    grey = (255 * (film - film.min()) / max(float(np.ptp(film)), 1e-6)).astype(np.uint8)
    PILImage.fromarray(grey).save(tmp_path / "film.png")
    args = ["explain", str(tmp_path / "film.png"), "--model", str(folder / "manifest.toml")]
    assert main([*args, "--methods", "gradcam", "--dicom", "--quiet", "--out", str(tmp_path / "out")]) == 0
    matching = json.loads((tmp_path / "out" / "film" / "detection_matching.json").read_text())
    assert "only DICOM" in matching["dicom_sr_skipped"] and "dicom_sr" not in matching
    assert not (tmp_path / "out" / "film" / "detections_sr.dcm").exists()
