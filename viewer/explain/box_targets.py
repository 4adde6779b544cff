"""Boxes as targets: what a map of a detection network explains.

A detector outputs boxes, so the target of a map is one detected box, and the score explained is
the one pytorch-grad-cam's ``FasterRCNNBoxScoreTarget`` defines (read in its
``utils/model_targets.py``, grad-cam 1.5): among the boxes the detector outputs for the (possibly
perturbed) input, the one of largest IoU with the target box; if that IoU is above the threshold
(strictly) and its label is the target's, the score is that IoU plus that box's score, else 0.
Both terms move with the input: the box's score and how well the box stays where it was.

As for a segmenter's regions (:mod:`viewer.explain.targets`), ``BoxScores`` wraps the detector so
that its output is one such score per target box ``(B, boxes)``, and every method that takes a
target runs on it unchanged: the CAM family and the gradient methods through autograd (eval mode:
the RoI heads' scores and box regressions are differentiable in the input), the perturbation
methods on the scores of the perturbed images. D-RISE is the black-box method made for detectors.

A detector's boxes are explained on one frame: the one asked for, or of the frames asked for the
one whose best box scores highest (a film has one). A box may also be given (a box clicked, a
radiologist's box): it stands for the detected box of its label that overlaps it most (IoU at
least the threshold), or, where the detector gave none there, for itself with a score of 1:
D-RISE then shows what would make the model see it; a box score is 0 for every input near the
detector's own output, so the gradient and CAM maps of such a box are empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torchvision
from torch import nn

from viewer.explain import drise
from viewer.explain.context import ExplainContext
from viewer.explain.registry import register_detector_method
from viewer.inference.detection import Detections, boxes_to_input, boxes_to_native, presence, read_outputs
from viewer.inference.feature_grid import NCHW
from viewer.inference.model import LoadedModel
from viewer.inference.output_head import OutputHead
from viewer.inference.preprocess import GridTransform

# D-RISE reads the boxes BoxScores holds (``network`` and ``targets``, each with ``box``,
# ``label_id`` and ``score``): the black-box method of every detection model.
register_detector_method(drise.DRISE)
# Box scores are IoU + score sums: nothing turns them into probabilities.
BOX_SCORE = OutputHead("identity", "the IoU plus the score of the detector's box matching the target box")
# Where the detector sits inside ``BoxScores``: its layer names get this prefix.
PREFIX = "network."


@dataclass(frozen=True)
class BoxTarget:
    """One target box on the network's input grid: ``box`` ``x0, y0, x1, y1``, its label's id
    (``1..K``, the detector's own), the IoU above which an output box is the same box, and the
    score the detector gave it (D-RISE's class vector of the target)."""

    box: tuple[float, float, float, float]
    label_id: int
    iou_threshold: float = 0.5
    score: float = 1.0


def box_score(output: dict[str, torch.Tensor], target: BoxTarget) -> torch.Tensor:
    """pytorch-grad-cam's ``FasterRCNNBoxScoreTarget`` for one box: IoU + score of the output box
    that overlaps ``target`` most, where that IoU exceeds the threshold and the label agrees."""
    boxes = output["boxes"]
    # No match scores 0, still a function of the input (with zero gradient): a box given alone
    # (a radiologist's the detector missed) must give empty gradient and CAM maps, not an error.
    zero = output["scores"].sum() * 0.0
    if len(boxes) == 0:
        return zero
    box = torch.as_tensor(target.box, device=boxes.device, dtype=boxes.dtype)[None]
    ious = torchvision.ops.box_iou(box, boxes)[0]
    index = ious.argmax()
    if ious[index] > target.iou_threshold and int(output["labels"][index]) == target.label_id:
        return ious[index] + output["scores"][index]
    return zero


class BoxScores(nn.Module):
    """A detector seen as a classifier with one output per target box: ``(B, boxes)`` scores
    (:func:`box_score`), the same targets for every sample of a batch (every batch here holds
    copies of one frame, perturbed)."""

    def __init__(self, network: nn.Module, targets: Sequence[BoxTarget]):
        super().__init__()
        self.network = network
        self.targets = list(targets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = read_outputs(self.network(x), len(x))
        return torch.stack([torch.stack([box_score(o, t) for t in self.targets]) for o in outputs])


@dataclass
class DetectionPass:
    """A detector's boxes on the frame explained, and the boxes its maps explain.

    ``found`` holds every box the detector gives on the input grid, ``native`` the same on the
    native grid; ``chosen`` the indices (into both) of the boxes explained: those scored at least
    the manifest's ``score_threshold``, of the labels asked for (every label by default), or the
    detected boxes that the boxes given match; ``given`` the boxes given that match none, as
    ``(label, box on the input grid)``, explained after the chosen ones."""

    found: Detections
    native: Detections
    chosen: list[int]
    index: int  # which of the inputs given is the frame explained
    frame: int
    transform: GridTransform
    labels: tuple[str, ...]
    iou_threshold: float
    probabilities: np.ndarray  # (1, labels): each label's best box score on the frame
    given: list[tuple[str, np.ndarray]]

    @classmethod
    def run(
        cls,
        model: LoadedModel,
        inputs: torch.Tensor,
        frames: Sequence[int],
        transform: GridTransform,
        targets: Sequence[str] | None = None,
        boxes: Sequence[tuple[str, Sequence[float]]] | None = None,
    ) -> DetectionPass:
        labels = model.manifest.labels
        unknown = [t for t in [*(targets or ()), *(label for label, _ in boxes or ())] if t not in labels]
        if unknown:
            raise KeyError(f"unknown target label(s) {', '.join(unknown)}; the model has {', '.join(labels)}")
        spec = model.manifest.detection
        threshold = spec.score_threshold if spec is not None else 0.5
        per_frame = model.detect(inputs)
        best = [float(d.scores.max()) if len(d) else 0.0 for d in per_frame]
        index = int(np.argmax(best))
        found = per_frame[index]
        iou_threshold = spec.iou_threshold if spec is not None else 0.5
        chosen = [
            i
            for i, (label, score) in enumerate(zip(found.labels, found.scores, strict=True))
            if score >= threshold and (not targets or label in targets)
        ]
        given: list[tuple[str, np.ndarray]] = []
        if boxes is not None:
            chosen = []
            for label, box in boxes:
                on_input = boxes_to_input(np.asarray(box, np.float64), transform)[0]
                match = _best_match(found, label, on_input, iou_threshold)
                if match is None:
                    given.append((label, on_input))
                elif match not in chosen:
                    chosen.append(match)
        native = found.to_native(transform)
        return cls(
            found,
            native,
            chosen,
            index,
            frames[index],
            transform,
            labels,
            iou_threshold,
            presence([native], labels),
            given,
        )

    def box_index(self, position: int) -> int | None:
        """The index in the frame's detections of the ``position``-th box explained (None for a
        box given that the detector did not find)."""
        return self.chosen[position] if position < len(self.chosen) else None

    def targets(self) -> list[BoxTarget]:
        """The chosen boxes as targets, in ``chosen``'s order."""
        return [
            BoxTarget(
                tuple(float(v) for v in self.found.boxes[i]),
                self.labels.index(self.found.labels[i]) + 1,
                self.iou_threshold,
                float(self.found.scores[i]),
            )
            for i in self.chosen
        ] + [
            BoxTarget(tuple(float(v) for v in box), self.labels.index(label) + 1, self.iou_threshold)
            for label, box in self.given
        ]

    def label_indices(self) -> list[int]:
        """The label index of each chosen box (what a map's ``target_index`` holds)."""
        chosen = [self.found.labels[i] for i in self.chosen]
        return [self.labels.index(label) for label in [*chosen, *(label for label, _ in self.given)]]

    def context(self, model: LoadedModel, inputs: torch.Tensor, **kwargs) -> ExplainContext:
        """A context whose "logits" are the chosen boxes' scores on the frame's ``inputs``
        ``(1, C, H, W)``; targets are then the boxes' positions ``0 .. len(chosen) - 1``."""
        layer = PREFIX + model.target_layer if model.target_layer is not None else None
        return ExplainContext(
            BoxScores(model.network, self.targets()).to(inputs.device),
            layer,
            inputs,
            task="detection",
            head=BOX_SCORE,
            grid=model.grid or NCHW,
            **kwargs,
        )

    def note(self, position: int) -> str:
        """What the map of the ``position``-th chosen box explains."""
        if position >= len(self.chosen):
            label, box = self.given[position - len(self.chosen)]
            corners = ", ".join(f"{v:.0f}" for v in boxes_to_native(box[None], self.transform)[0])
            return (
                f"explains a box given ({label}, [{corners}] in image pixels) that the detector did not "
                f"find: scored 1 as D-RISE's target; its box score (IoU + score of a matching detection) "
                "is 0 near the input, so gradient and CAM maps of it are empty"
            )
        i = self.chosen[position]
        box = ", ".join(f"{v:.0f}" for v in self.native.boxes[i])
        return (
            f"explains box {i} ({self.native.labels[i]}, score {self.native.scores[i]:.3f}, [{box}] in image "
            f"pixels): the IoU plus the score of the detector's box that matches it (IoU > "
            f"{self.iou_threshold:g}, same label), as pytorch-grad-cam's FasterRCNNBoxScoreTarget"
        )


def _best_match(found: Detections, label: str, box: np.ndarray, threshold: float) -> int | None:
    """The detected box of ``label`` that overlaps ``box`` (input grid) most, if by ``threshold``."""
    same = [i for i, name in enumerate(found.labels) if name == label]
    if not same:
        return None
    ious = torchvision.ops.box_iou(torch.as_tensor(box[None]), torch.as_tensor(found.boxes[same]).double())[0]
    best = int(ious.argmax())
    return same[best] if float(ious[best]) >= threshold else None


__all__ = ["BOX_SCORE", "PREFIX", "BoxScores", "BoxTarget", "DetectionPass", "box_score"]
