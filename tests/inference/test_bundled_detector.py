"""The bundled demo detector (models/cxr_detector): it loads from its manifest as the viewer loads
it, finds the findings its card says it finds on fresh phantoms (a seed neither its training nor
its card's evaluation used), and its boxes' HiRes-CAM maps point at the boxes."""

import json
from pathlib import Path

import numpy as np
import pytest

from models.train_detector import IOU_MATCH, average_precision, box_hits, native_truth
from viewer.api.sources import open_image
from viewer.explain import engine
from viewer.explain.registry import get_method
from viewer.inference import LoadedModel
from viewer.phantoms.chest import CHEST_LABELS

MODEL = Path(__file__).resolve().parents[2] / "models" / "cxr_detector"
FRESH_SEED = 424242
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return LoadedModel.from_manifest(MODEL, device="cpu")


@pytest.fixture(scope="module")
def fresh() -> list[tuple[np.ndarray, list]]:
    """Fresh phantoms at their own size (256 px) with their true boxes in their pixels."""
    return [native_truth(FRESH_SEED + i) for i in range(40)]


def test_it_is_small_and_says_what_it_is(model):
    assert model.manifest.task == "detection" and model.manifest.labels == tuple(CHEST_LABELS)
    assert model.manifest.weights.stat().st_size < 10e6  # a demo model the wheel can carry
    assert "not for clinical use" in model.manifest.card.read_text().lower()
    assert model.target_layer is not None and model.target_layer.startswith("backbone.body.")


def test_it_finds_what_its_card_says_on_fresh_phantoms(model, fresh):
    card = json.loads((MODEL / "metrics.json").read_text())["ap50"]
    detections, truths = [], []
    for pixels, truth in fresh:
        found = model.predict(open_image(pixels)).detections[0]
        ids = np.array([CHEST_LABELS.index(label) + 1 for label in found.labels], np.int64)
        detections.append({"boxes": found.boxes, "labels": ids, "scores": found.scores})
        truths.append(
            {
                "boxes": np.array([box for box, _ in truth], np.float32).reshape(-1, 4),
                "labels": np.array([CHEST_LABELS.index(label) + 1 for _, label in truth], np.int64),
            }
        )
    for k, label in enumerate(CHEST_LABELS):
        if card[label] < 0.5:
            continue  # nodules: the card says it rarely finds them
        ap, _, n_true = average_precision(detections, truths, k + 1)
        assert n_true >= 5, label
        # 40 fresh phantoms against the card's 80: room for sampling noise, never chance.
        assert ap >= card[label] - 0.15, (label, ap, card[label])


def test_its_boxes_maps_peak_inside_the_boxes(model, fresh):
    """The pointing game of a detection map: each box found at the threshold that matches a true
    box of its label, explained with HiRes-CAM (the card's CAM that points) through the viewer's
    engine, peaks inside the box."""
    hits = []
    for pixels, truth in fresh:
        result = engine.explain(model, open_image(pixels), [get_method("hirescam")])
        hits += [inside for _, inside in box_hits(result, truth)]
    assert len(hits) >= 15, f"only {len(hits)} boxes matched a true one (IoU >= {IOU_MATCH})"
    card = json.loads((MODEL / "metrics.json").read_text())["maps"]["hirescam"]["hit_rate_all"]
    assert np.mean(hits) >= card - 0.2, (np.mean(hits), card)
