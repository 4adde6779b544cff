"""D-RISE: black-box saliency of a detector's boxes (Petsiuk et al., CVPR 2021).

A detector has no single score to perturb: each masked copy of the image gives a new set of boxes.
D-RISE compares them with the box explained. Every detection is a *proposal vector*
``d = [L, O, P]``: its box ``L``, its objectness ``O`` and its class probabilities ``P``. A mask
``M_i`` weighs

    w_i = max_j  IoU(L_t, L_ij) * cos(P_t, P_ij) * O_ij

over the detections ``j`` of the image masked by ``M_i`` (0 where it has none), and the map of the
target ``t`` is ``sum_i w_i M_i``. The masks are RISE's (``rise_masks``), so every target of an
image (all its boxes, and any given box) comes from one set of masked forwards.

What a detector gives decides ``O`` and ``P``. torchvision's detectors (and anything following
their convention: ``detector(batch (N, C, H, W)) -> [{"boxes" (K, 4), "labels" (K,), "scores"
(K,)}]``) give no objectness (``O = 1``) and only the winning label and its score; a detector
that also returns ``"class_scores"`` ``(K, classes)`` or ``"objectness"`` ``(K,)`` has them used.
Without class scores, ``P`` is rebuilt from the label and score (``class_vector``):

- ``"background"`` (default): the score on the label and the rest, ``1 - score``, on the
  background (class 0, torchvision's): the two entries of the softmax that are known, so a weak
  box of the right class weighs less than a confident one (with ``P_t`` of a box scored 1,
  ``cos = s / sqrt(s^2 + (1 - s)^2)``);
- ``"one-hot"``: the label's one-hot vector times the score; the cosine then only asks whether the
  labels agree, and the score plays no part.

A target is a box on the network's input grid, its label id and the score it had (1 for a box the
detector did not give: a radiologist's box it missed, where the map answers "what would make the
model see it here"). The context's network holds them: ``ctx.network.network`` is the detector and
``ctx.network.targets`` the target boxes (``box``, ``label_id`` and optionally ``score``), as
:class:`Targeted` here and ``viewer.explain.box_targets.BoxScores`` hold them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torchvision
from torch import nn

from viewer.explain.context import CancelFlag, ExplainContext
from viewer.explain.perturbation import _Stopping, rise_masks

ClassVector = Literal["background", "one-hot"]
CLASS_VECTORS: tuple[str, ...] = ("background", "one-hot")
# The generator salt of D-RISE's masks: another draw than RISE's for the same seed.
SALT = 31


@dataclass(frozen=True)
class DriseTarget:
    """A box to explain on the network's input grid: ``x0, y0, x1, y1``, the detector's label id
    (torchvision's ``1..K``) and the score it had; ``score`` 1 for a given box (not detected)."""

    box: tuple[float, float, float, float]
    label_id: int
    score: float = 1.0


class Targeted(nn.Module):
    """A detector and the boxes to explain, as D-RISE reads them from a context's network."""

    def __init__(self, network: Callable, targets: Sequence[DriseTarget]):
        super().__init__()
        self.network = network
        self.targets = list(targets)

    def forward(self, x: torch.Tensor):
        return self.network(x)


def class_vectors(
    labels: torch.Tensor, scores: torch.Tensor, classes: int, mode: ClassVector = "background"
) -> torch.Tensor:
    """Class probability vectors ``(K, classes)`` rebuilt from each box's label and score (see the
    module's docstring for the two ``mode``\\ s)."""
    vectors = torch.zeros((len(labels), classes), dtype=torch.float64)
    rows = torch.arange(len(labels))
    vectors[rows, labels.long()] = scores.double()
    if mode == "background":
        vectors[rows, 0] += 1.0 - scores.double()
    elif mode != "one-hot":
        raise ValueError(f"class_vector must be one of {', '.join(CLASS_VECTORS)}, not {mode!r}")
    return vectors


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return vectors / vectors.norm(dim=1, keepdim=True).clamp(min=1e-12)


def _padded(vectors: torch.Tensor, classes: int) -> torch.Tensor:
    """Zero columns up to ``classes``: a cosine does not change."""
    if vectors.shape[1] >= classes:
        return vectors
    return torch.cat([vectors, vectors.new_zeros((len(vectors), classes - vectors.shape[1]))], dim=1)


def mask_weights(
    outputs: Sequence[dict[str, torch.Tensor]],
    boxes: torch.Tensor,
    vectors: torch.Tensor,
    mode: ClassVector = "background",
) -> torch.Tensor:
    """``w`` ``(N, T)``: for each masked image's detections (torchvision's dicts) and each target
    (box ``(T, 4)``, class vector ``(T, classes)``), the largest ``IoU * cos * O`` over the image's
    detections, 0 where it has none."""
    weights = torch.zeros((len(outputs), len(boxes)), dtype=torch.float64)
    targets_unit = _unit(vectors.double())
    for i, out in enumerate(outputs):
        found = out["boxes"].detach().double().cpu().reshape(-1, 4)
        if len(found) == 0:
            continue
        if "class_scores" in out:
            probs = out["class_scores"].detach().double().cpu()
        else:
            labels = out["labels"].detach().cpu()
            width = max(vectors.shape[1], int(labels.max()) + 1)
            probs = class_vectors(labels, out["scores"].detach().cpu(), width, mode)
        classes = max(probs.shape[1], vectors.shape[1])
        cos = _padded(targets_unit, classes) @ _padded(_unit(probs), classes).T  # (T, K)
        iou = torchvision.ops.box_iou(boxes.double(), found)
        similarity = iou * cos
        if "objectness" in out:
            similarity = similarity * out["objectness"].detach().double().cpu()[None]
        weights[i] = similarity.amax(dim=1)
    return weights


def _as_outputs(raw: object, batch: int) -> list[dict[str, torch.Tensor]]:
    """torchvision's convention, one dict per image; anything else: ValueError saying what came."""
    if isinstance(raw, dict):
        raw = [raw]
    if not (isinstance(raw, list | tuple) and len(raw) == batch and all(isinstance(o, dict) for o in raw)):
        raise ValueError(
            "D-RISE needs a detector that returns one {boxes, labels, scores} dict per image "
            f"(torchvision's convention); got {type(raw).__name__} for a batch of {batch}"
        )
    missing = [k for k in ("boxes", "labels", "scores") if k not in raw[0]]
    if missing:
        raise ValueError(f"D-RISE: the detector's output lacks {', '.join(missing)}")
    return list(raw)


class DRISE(_Stopping):
    """D-RISE (detector RISE): the mean of N random smooth masks (RISE's), each weighted by how
    well the detections of the image it masks match the box explained: the best, over those
    detections, of IoU of the boxes x cosine of the class vectors x objectness (Petsiuk et al.
    2021). The map is offset to start at 0 as RISE's. One set of masked forwards serves every box
    of the image and any given box (a finding the detector missed: "what would make it see it
    here"). torchvision's detectors give a label and a score, not class probabilities: the class
    vector is rebuilt as the score on the label and the rest on the background
    (``class_vector``; see :mod:`viewer.explain.drise`), and objectness is 1.

    Slow: a detector forward per mask, up to ``masks`` (default 2000) of them. Measured with
    ``tests/perf/bench_drise.py`` on the bundled toy detector (models/cxr_detector, FCOS on
    MobileNetV3-Small at 160 px), one torch thread of a two-core machine: 19.4 s for 2000 masks
    and an image's 3 boxes (6.5 s per box), against 43.8 s for vision-explanation-methods' D-RISE
    (one mask per forward). A larger detector costs far more per forward (a 160-pixel Faster R-CNN
    MobileNetV3 took 0.65 s a mask on a loaded machine: about 20 minutes for 2000 masks;
    ResNet-50 FPN detectors at their own sizes more). Anytime as LIME and RISE: a first map after
    the first batches, refined as masks arrive; with
    ``converge`` it stops once the mean map moved less than ``tolerance`` of its maximum at two
    successive steps of ``step`` masks, from ``min_masks`` on."""

    id = "drise"
    seeded = True
    seconds = 240.0
    quick: ClassVar[dict] = {"masks": 40}
    report: ClassVar[dict] = {"masks": 1000}
    title = "D-RISE"
    reference = "Petsiuk et al., CVPR 2021 (RISE masks weighted by detection similarity)"
    count_key = "masks"
    minimum_key = "min_masks"
    unit = "masks"

    @classmethod
    def defaults(cls) -> dict:
        return {
            "masks": 2000, "cells": 16, "p": 0.5, "class_vector": "background",
            "converge": True, "min_masks": 500, "step": 100, "tolerance": 0.05,
        }  # fmt: skip

    def settled(self) -> str:
        tolerance, step = self.params["tolerance"], self.params["step"]
        return f"mean map moved < {tolerance:.0%} of its maximum over 2 steps of {step}"

    def map_notes(self, target: int) -> list[str]:
        rebuilt = {
            "background": "class vectors rebuilt from each box's label and score (score on the label, "
            "the rest on the background); objectness 1 where the detector gives none",
            "one-hot": "class vectors one-hot x score (the cosine only asks whether labels agree); "
            "objectness 1 where the detector gives none",
        }[self.params["class_vector"]]
        return [*super().map_notes(target), rebuilt]

    def compute_one(self, ctx, x, targets):
        detector, chosen = detector_targets(ctx, targets)
        n, p, mode = self.params["masks"], self.params["p"], self.params["class_vector"]
        if mode not in CLASS_VECTORS:
            raise ValueError(f"class_vector must be one of {', '.join(CLASS_VECTORS)}, not {mode!r}")
        grid = tuple(x.shape[1:])
        if len(grid) != 2:
            raise ValueError("D-RISE explains a 2-D detector's boxes")
        masks = rise_masks(ctx.generator(salt=SALT), n, self.params["cells"], p, grid)
        boxes = torch.tensor([t.box for t in chosen], dtype=torch.float64).reshape(-1, 4)
        classes = max(t.label_id for t in chosen) + 1
        labels = torch.tensor([t.label_id for t in chosen])
        scores = torch.tensor([float(getattr(t, "score", 1.0)) for t in chosen])
        vectors = class_vectors(labels, scores, classes, mode)
        total = torch.zeros((len(chosen), *grid), dtype=torch.float64)

        def run(start: int, stop: int) -> None:
            batch_masks = masks(start, stop)
            with torch.inference_mode():
                raw = detector(x[None] * batch_masks.to(x.dtype))
            w = mask_weights(_as_outputs(raw, stop - start), boxes, vectors, mode)
            total.add_(torch.einsum("nt,nhw->thw", w, batch_masks[:, 0].double()))

        def estimate(done: int) -> torch.Tensor:
            saliency = total / done
            return (saliency - saliency.amin(dim=(1, 2), keepdim=True)).float()

        def stable(before: torch.Tensor, now: torch.Tensor) -> bool:
            change = (now - before).abs().amax(dim=(1, 2))
            return bool((change <= self.params["tolerance"] * now.abs().amax(dim=(1, 2))).all())

        return self.until_settled(ctx, run, estimate, stable, targets)


def detector_targets(ctx: ExplainContext, targets: list[int]) -> tuple[Callable, list]:
    """The detector and the target boxes ``targets`` (positions) the context's network holds."""
    holder = ctx.network
    boxes = getattr(holder, "targets", None)
    detector = getattr(holder, "network", None)
    if detector is None or not isinstance(boxes, list) or not all(hasattr(b, "box") for b in boxes):
        raise ValueError(
            'D-RISE explains a detector\'s boxes: the model must be a detection model (task = "detection")'
        )
    return detector, [boxes[t] for t in targets]


def drise(
    detector: Callable,
    image: torch.Tensor,
    targets: Sequence[DriseTarget],
    *,
    seed: int = 0,
    batch_size: int | None = None,
    cancel: CancelFlag | None = None,
    preview: Callable[[torch.Tensor, list[str], str], None] | None = None,
    progress: Callable[[float], None] | None = None,
    **params,
) -> torch.Tensor:
    """D-RISE maps ``(T, H, W)`` of ``targets`` on one input ``image`` ``(C, H, W)`` (as the
    detector takes it) for any detector following torchvision's convention, outside a loaded
    model: the same computation the viewer runs. ``params`` are :class:`DRISE`'s; ``preview``
    receives the estimate so far as ``(T, 1, H, W)`` where the run is long enough."""
    network = Targeted(detector, targets)
    ctx = ExplainContext(
        network, None, image[None], task="detection", seed=seed, batch_size=batch_size, input_grads=False,
        cancel=cancel, progress=progress,
    )  # fmt: skip
    ctx.preview = preview
    method = DRISE(**params)
    with ctx:
        return method.compute(ctx, list(range(len(targets))))[:, 0]


__all__ = [
    "CLASS_VECTORS",
    "DRISE",
    "DriseTarget",
    "Targeted",
    "class_vectors",
    "detector_targets",
    "drise",
    "mask_weights",
]
