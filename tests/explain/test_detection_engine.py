"""The engine on a detection model: one map per detected box (of the labels asked for, at or above
the manifest's threshold), D-RISE among the methods, and D-RISE refused where there are no boxes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from safetensors.torch import save_file

from tests.explain.detectors import detector
from viewer.explain import explain, get_method
from viewer.explain.engine import UnsupportedMethod
from viewer.inference.catalog import bundled_models
from viewer.inference.model import LoadedModel
from viewer.io import discover
from viewer.io.loader import load_series
from viewer.resources import resource_path

pytestmark = pytest.mark.timeout(300)
LABELS = ("nodule", "consolidation")


@pytest.fixture(scope="module")
def film():
    return load_series(discover([resource_path("samples", "dicom", "cxr_0001.dcm")]).series[0])


@pytest.fixture(scope="module")
def model(tmp_path_factory, film):
    folder = tmp_path_factory.mktemp("detector")
    network = detector(labels=len(LABELS))
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, folder / "w.safetensors")
    manifest = (
        'name = "det"\ntask = "detection"\nlabels = ["nodule", "consolidation"]\n[network]\n'
        'arch = "fasterrcnn_mobilenet_v3_large_320_fpn"\nweights = "w.safetensors"\nin_channels = 3\n'
        "[input]\nsize = [128, 128]\n"
    )
    (folder / "manifest.toml").write_text(manifest)
    scores = LoadedModel.from_manifest(folder, device="cpu").predict(film).detections[0].scores
    (folder / "manifest.toml").write_text(manifest + f"[detection]\nscore_threshold = {float(scores[1])!r}\n")
    return LoadedModel.from_manifest(folder, device="cpu")


def test_a_map_per_box_with_its_index_and_what_it_explains(model, film):
    found = model.predict(film).detections[0]
    kept = [i for i in range(len(found)) if found.scores[i] >= model.manifest.detection.score_threshold]
    result = explain(model, film, ["gradcam", get_method("drise", masks=40, converge=False)], seed=0)
    assert result.detections is not None
    np.testing.assert_allclose(result.detections.boxes, found.boxes, atol=1e-4)
    for method in ("gradcam", "drise"):
        maps = [m for m in result.maps if m.method == method]
        assert [m.box for m in maps] == kept
        for m in maps:
            assert m.target == found.labels[m.box] and m.target_index == LABELS.index(m.target)
            assert m.array.shape == (1, film.rows, film.columns) and np.isfinite(m.array).all()
            assert any(f"box {m.box} (" in note for note in m.notes)
    # A label asked for: only its boxes.
    wanted = found.labels[0]
    only = explain(model, film, ["gradcam"], targets=[wanted])
    assert [m.box for m in only.maps] == [i for i in kept if found.labels[i] == wanted]


def test_drise_needs_a_detection_model(film):
    classifier = LoadedModel.from_manifest(bundled_models()["cxr_resnet18"], device="cpu")
    with pytest.raises(UnsupportedMethod, match="needs a detection model"):
        explain(classifier, film, ["drise"])


def test_no_box_at_the_threshold_gives_no_maps(model, film):
    before = model.manifest
    spec = dataclasses.replace(before.detection, score_threshold=1.0)
    model.manifest = dataclasses.replace(before, detection=spec)
    try:
        result = explain(model, film, ["gradcam"])
    finally:
        model.manifest = before
    assert result.maps == [] and len(result.detections) > 0
    # The frame's scores per label are still there (predictions.json's).
    assert result.probabilities.shape == (1, 2) and float(result.probabilities.max()) > 0


def test_a_box_given_is_the_detection_it_matches_or_itself(model, film):
    found = model.predict(film).detections[0]
    clicked = found.boxes[1] + np.float32(2.0)  # a click's box: near detection 1, not on it
    far = [900.0, 20.0, 1010.0, 120.0]
    assert not any(
        label == found.labels[0] and _iou(b, far) >= 0.5
        for b, label in zip(found.boxes, found.labels, strict=True)
    )
    drise = get_method("drise", masks=40, converge=False)
    result = explain(
        model, film, ["gradcam", drise], boxes=[(found.labels[1], clicked), (found.labels[0], far)]
    )
    for method in ("gradcam", "drise"):
        first, missed = (m for m in result.maps if m.method == method)
        assert first.box == _best(found, found.labels[1], clicked) and first.target == found.labels[1]
        assert missed.box is None and missed.target == found.labels[0]
        assert any("did not find" in note for note in missed.notes)
    # The box score has no gradient where the detector found nothing; D-RISE still has a map.
    missed_gradcam = next(m for m in result.maps if m.method == "gradcam" and m.box is None)
    assert missed_gradcam.scale == 0.0 and not missed_gradcam.array.any()
    missed_drise = next(m for m in result.maps if m.method == "drise" and m.box is None)
    assert np.isfinite(missed_drise.array).all()


def test_a_missed_box_alone_has_empty_gradient_and_cam_maps(model, film):
    """The window explains one box at a time: a radiologist's box the detector did not find, on
    its own, is scored 0 by every input near the film, so its maps are empty (not an error)."""
    far = [900.0, 20.0, 1010.0, 120.0]
    found = model.predict(film).detections[0]
    assert not any(_iou(b, far) >= 0.5 for b in found.boxes)
    result = explain(model, film, ["gradient", "gradcam"], boxes=[(found.labels[0], far)])
    assert [m.method for m in result.maps] == ["gradient", "gradcam"]
    for m in result.maps:
        assert m.box is None and not m.array.any() and any("did not find" in note for note in m.notes)


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union


def _best(found, label, box) -> int:
    same = [i for i, name in enumerate(found.labels) if name == label]
    return max(same, key=lambda i: _iou(found.boxes[i], box))
