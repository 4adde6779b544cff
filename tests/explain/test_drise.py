"""D-RISE against a written-out reference of the paper's formula, on a hand-made detector whose boxes
and scores depend on known pixels; where its maps peak; seeds; cancel; the anytime previews."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from viewer.explain.context import Cancelled, ExplainContext
from viewer.explain.drise import DRISE, SALT, DriseTarget, Targeted, drise
from viewer.explain.perturbation import rise_masks

SIZE = 32
REGION = (slice(8, 20), slice(10, 22))  # rows, cols: all detection 1 reads


class KnownRegionDetector(nn.Module):
    """torchvision's output convention, computed from known pixels only: detection 1 (label 1) sits on
    ``REGION``, scores the region's mean and moves its left and top edges in as the region's left
    and top halves darken; detection 2 (label 2) reads the bottom-left corner, detection 3 (label 1)
    the top-right one. A detection scoring under 0.05 is dropped, as torchvision's threshold does."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, batch: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        out = []
        for x in batch[:, 0].double():
            self.calls += 1
            region = x[REGION]
            a, b = float(region[:, :6].mean()), float(region[:6].mean())
            found = [
                ([10 + 6 * (1 - a), 8 + 6 * (1 - b), 22.0, 20.0], 1, float(region.mean())),
                ([0.0, 20.0, 12.0, 32.0], 2, float(x[20:, :12].mean())),
                ([20.0, 0.0, 32.0, 12.0], 1, 0.5 * float(x[:12, 20:].mean())),
            ]
            kept = [f for f in found if f[2] > 0.05]
            out.append(
                {
                    "boxes": torch.tensor([f[0] for f in kept], dtype=torch.float32).reshape(-1, 4),
                    "labels": torch.tensor([f[1] for f in kept], dtype=torch.int64),
                    "scores": torch.tensor([f[2] for f in kept], dtype=torch.float32),
                }
            )
        return out


def image() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(3).uniform(0.6, 1.0, (1, SIZE, SIZE))).float()


def targets_of(detector: KnownRegionDetector, x: torch.Tensor) -> list[DriseTarget]:
    """Detections 1 and 2 of the unmasked image, and a box given by hand that the detector
    never outputs (a "missed finding"), label 1."""
    out = detector(x[None])[0]
    found = [
        DriseTarget(tuple(out["boxes"][k].tolist()), int(out["labels"][k]), float(out["scores"][k]))
        for k in (0, 1)
    ]
    return [*found, DriseTarget((16.0, 16.0, 30.0, 30.0), 1)]


# --- the reference: the paper's formula written out, one mask and one detection at a time ------


def iou(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def class_vector(label: int, score: float, mode: str, classes: int = 3) -> list[float]:
    """P of a detection from its label and score: the score on the label, and with "background"
    the rest on class 0."""
    p = [0.0] * classes
    p[label] = score
    if mode == "background":
        p[0] += 1 - score
    return p


def cosine(u, v) -> float:
    dot = sum(a * b for a, b in zip(u, v, strict=True))
    return dot / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))


def reference_drise(detector, x, targets, masks: np.ndarray, mode: str) -> np.ndarray:
    """sum_i w_i M_i with w_i = max_j IoU(L_t, L_j) cos(P_t, P_j) O_j (O = 1), divided by N and
    offset to start at 0 as the viewer shows it."""
    total = np.zeros((len(targets), SIZE, SIZE))
    for m in masks:
        out = detector((x * torch.from_numpy(m).float())[None])[0]
        for t, target in enumerate(targets):
            p_t = class_vector(target.label_id, target.score, mode)
            w = 0.0
            for box, label, score in zip(
                out["boxes"].tolist(), out["labels"].tolist(), out["scores"].tolist(), strict=True
            ):
                p_j = class_vector(label, score, mode)
                w = max(w, iou(target.box, box) * cosine(p_t, p_j) * 1.0)
            total[t] += w * m[0]
    saliency = total / len(masks)
    return saliency - saliency.min(axis=(1, 2), keepdims=True)


def drawn_masks(seed: int, n: int, cells: int, p: float) -> np.ndarray:
    """The masks a run with ``seed`` draws, through the context's generator as the method does."""
    g = ExplainContext(nn.Identity(), None, torch.zeros(1, 1, SIZE, SIZE), seed=seed).generator(salt=SALT)
    return rise_masks(g, n, cells, p, (SIZE, SIZE))(0, n).double().numpy()


@pytest.mark.parametrize("mode", ["background", "one-hot"])
def test_drise_equals_the_papers_formula_written_out(mode):
    detector, x = KnownRegionDetector(), image()
    targets = targets_of(detector, x)
    n, cells, p = 120, 4, 0.5
    ours = drise(
        detector,
        x,
        targets,
        seed=5,
        batch_size=16,
        masks=n,
        cells=cells,
        p=p,
        converge=False,
        class_vector=mode,
    )
    expected = reference_drise(detector, x, targets, drawn_masks(5, n, cells, p), mode)
    assert ours.shape == (3, SIZE, SIZE)
    assert float(np.abs(expected).max()) > 0.01  # the maps hold something
    np.testing.assert_allclose(ours.double().numpy(), expected, rtol=0, atol=1e-6)


def test_a_detector_reading_one_region_gets_a_map_peaking_there():
    detector = KnownRegionDetector()
    x = torch.ones(1, SIZE, SIZE)
    target = targets_of(detector, x)[0]  # detection 1: reads REGION only
    smap = drise(detector, x, [target], seed=1, masks=600, cells=8, converge=False)[0].numpy()
    row, col = np.unravel_index(np.argmax(smap), smap.shape)
    assert REGION[0].start <= row < REGION[0].stop and REGION[1].start <= col < REGION[1].stop
    inside = np.zeros(smap.shape, bool)
    inside[REGION] = True
    assert smap[inside].mean() > 2 * smap[~inside].mean()


def test_the_same_seed_repeats_and_another_differs():
    detector, x = KnownRegionDetector(), image()
    targets = targets_of(detector, x)
    params = {"masks": 60, "cells": 4, "converge": False}
    first = drise(detector, x, targets, seed=7, **params)
    assert torch.equal(first, drise(detector, x, targets, seed=7, batch_size=7, **params))
    assert not torch.allclose(first, drise(detector, x, targets, seed=8, **params))


class CancelAfter:
    def __init__(self, checks: int):
        self.checks = checks

    def is_set(self) -> bool:
        self.checks -= 1
        return self.checks < 0


def test_cancel_stops_the_forwards():
    detector, x = KnownRegionDetector(), image()
    targets = targets_of(detector, x)
    detector.calls = 0
    with pytest.raises(Cancelled):
        drise(detector, x, targets, batch_size=10, masks=500, converge=False, cancel=CancelAfter(3))
    assert 0 < detector.calls <= 30


def test_previews_refine_in_place_and_leave_the_final_map_as_it_was(monkeypatch):
    detector, x = KnownRegionDetector(), image()
    targets = targets_of(detector, x)
    params = {"masks": 200, "cells": 4, "converge": False, "seed": 2, "batch_size": 20}
    plain = drise(detector, x, targets, **params)
    monkeypatch.setattr(DRISE, "PREVIEW_FIRST_S", 0.0)
    monkeypatch.setattr(DRISE, "PREVIEW_EVERY_S", 0.0)
    shown = []
    final = drise(
        detector, x, targets, preview=lambda raw, notes, short: shown.append((raw, short)), **params
    )
    assert torch.equal(plain, final)
    assert len(shown) >= 3
    assert shown[0][0].shape == (3, 1, SIZE, SIZE)
    assert shown[0][1].startswith("20/200 masks")
    assert not torch.equal(shown[0][0][:, 0], final)  # an estimate, refined as masks arrive


def test_converge_stops_once_the_map_settles_and_says_so():
    detector, x = KnownRegionDetector(), image()
    targets = targets_of(detector, x)
    method = DRISE(masks=2000, cells=4, min_masks=200, step=100, tolerance=0.1)
    ctx = ExplainContext(Targeted(detector, targets), None, x[None], seed=0, batch_size=50, input_grads=False)
    detector.calls = 0
    method.compute(ctx, [0, 1, 2])
    assert 200 <= detector.calls < 2000 and detector.calls % 100 == 0  # whole steps, past the minimum
    notes = method.map_notes(0)
    assert notes[0].startswith(f"D-RISE stopped at {detector.calls} of 2000 masks")
    assert "label and score" in notes[1]


def test_a_network_that_is_not_a_detector_is_refused_with_a_reason():
    ctx = ExplainContext(nn.Conv2d(1, 2, 3), None, torch.zeros(1, 1, 8, 8), batch_size=4)
    with pytest.raises(ValueError, match="detection model"):
        DRISE(masks=4, converge=False).compute(ctx, [0])


def test_a_torchvision_detector_runs_as_the_paper_intends():
    """A seeded torchvision Faster R-CNN (nothing downloaded): every target's map is finite and
    the boxes it gives are read in its own convention."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=64, max_size=64, box_score_thresh=0.0
    ).eval()
    x = torch.rand(3, 64, 64)
    with torch.inference_mode():
        found = net(x[None])[0]
    assert len(found["boxes"]) > 0
    targets = [
        DriseTarget(tuple(found["boxes"][0].tolist()), int(found["labels"][0]), float(found["scores"][0]))
    ]
    maps = drise(net, x, targets, masks=8, batch_size=4, converge=False)
    assert maps.shape == (1, 64, 64) and torch.isfinite(maps).all()


def test_class_scores_and_objectness_are_used_where_a_detector_gives_them():
    """A detector with full class probabilities and objectness (YOLO-style) is weighed by them, as the
    paper's proposal vectors are, not by a vector rebuilt from label and score."""
    from viewer.explain.drise import class_vectors, mask_weights

    target_box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    target_vector = class_vectors(torch.tensor([1]), torch.tensor([0.9]), 3)
    out = {
        "boxes": torch.tensor([[0.0, 0.0, 10.0, 5.0], [0.0, 0.0, 10.0, 10.0]]),
        "labels": torch.tensor([1, 2]),
        "scores": torch.tensor([0.7, 0.6]),
        "class_scores": torch.tensor([[0.1, 0.7, 0.2], [0.2, 0.2, 0.6]]),
        "objectness": torch.tensor([0.5, 0.8]),
    }
    p_t = [0.1, 0.9, 0.0]
    expected = max(
        iou([0, 0, 10, 10], [0, 0, 10, 5]) * cosine(p_t, [0.1, 0.7, 0.2]) * 0.5,
        iou([0, 0, 10, 10], [0, 0, 10, 10]) * cosine(p_t, [0.2, 0.2, 0.6]) * 0.8,
    )
    weights = mask_weights([out, {k: v[:0] for k, v in out.items()}], target_box, target_vector)
    assert weights.shape == (2, 1)
    assert abs(float(weights[0, 0]) - expected) < 1e-6  # the inputs are float32
    assert float(weights[1, 0]) == 0.0  # no detection: no weight


def test_an_unknown_class_vector_is_refused_with_the_choices():
    detector, x = KnownRegionDetector(), image()
    with pytest.raises(ValueError, match="background, one-hot"):
        drise(detector, x, targets_of(detector, x), masks=4, converge=False, class_vector="softmax")
