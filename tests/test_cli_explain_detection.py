"""``saliency-viewer explain`` with a detection manifest: detections.json (the model's boxes in the
image's own pixels, each with its maps), a metrics row per box, and the boxes matched to the
radiologists' (IoU) with precision and recall at the threshold."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.explain.detectors import detector
from viewer.batch.detection_files import box_iou, match_boxes
from viewer.cli import main
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


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detector")
    network = detector(labels=len(LABELS))
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, folder / "w.safetensors")
    manifest = (
        f'name = "chest detector"\ntask = "detection"\nlabels = {list(LABELS)!r}\n'.replace("'", '"')
        + '[network]\narch = "fasterrcnn_mobilenet_v3_large_320_fpn"\nweights = "w.safetensors"\n'
        "in_channels = 3\n[input]\nsize = [128, 128]\n"
    )
    (folder / "manifest.toml").write_text(manifest)
    boxes, labels, scores = own_detections(folder)
    threshold = float(scores[2])  # three boxes (or more, on a tie) at or above it
    (folder / "manifest.toml").write_text(manifest + f"[detection]\nscore_threshold = {threshold!r}\n")
    # The radiologists: the model's top box (as whole pixels) and one box it did not find.
    names = {"nodule": "Nodule/Mass", "consolidation": "Consolidation"}
    x0, y0, x1, y1 = (round(float(v)) for v in boxes[0])
    (folder / "vindr.csv").write_text(
        "image_id,rad_id,class_name,x_min,y_min,x_max,y_max\n"
        f"cxr_0001,R1,{names[labels[0]]},{x0},{y0},{x1},{y1}\n"
        f"cxr_0001,R2,{names[labels[0]]},900,900,1000,1000\n"
    )
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
