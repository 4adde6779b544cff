"""What turns a network's output into the probabilities the user sees.

Networks here output logits: where a saved model's own head ended in ``Sigmoid`` or ``Softmax``
(CheXNet's ``Sequential(Linear, Sigmoid)``, a Keras ``Dense(..., activation="sigmoid")`` in an
ONNX export), that last activation is taken off the network and applied here instead. The
probabilities are then the ones the user's own ``model(x)`` returns, and gradient methods explain
the logit before the activation: a saturated sigmoid has no gradient to show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

Activation = Literal["sigmoid", "softmax", "identity"]


@dataclass(frozen=True)
class OutputHead:
    activation: Activation
    source: str  # why this activation: "task", "the saved model's head", "network.output", ...
    # A monotone recalibration after the activation (TorchXRayVision's operating-point scaling).
    calibrate: Callable[[torch.Tensor], torch.Tensor] | None = None
    calibration: str = ""
    # The axis softmax normalises over: the labels' (-1) for a classifier, 1 (channels) for a
    # segmenter's (B, K, H, W) maps.
    axis: int = -1

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if self.activation == "sigmoid":
            p = torch.sigmoid(logits)
        elif self.activation == "softmax":
            p = torch.softmax(logits, dim=self.axis)
        else:
            p = logits
        return self.calibrate(p) if self.calibrate is not None else p

    def describe(self) -> str:
        if self.activation == "identity":
            return f"the network outputs probabilities itself ({self.source}); none applied"
        text = f"{self.activation} applied by the viewer ({self.source})"
        return text + (f", then {self.calibration}" if self.calibration else "")

    def map_note(self) -> str | None:
        """What a gradient map of this model explains, when that is not the obvious logit."""
        if self.activation == "identity":
            return "explains the output probability itself, which saturates (no logit to explain)"
        if self.source != "task":
            return f"explains the logit before the model's own {self.activation} ({self.source})"
        return None


def task_head(task: str) -> OutputHead:
    return OutputHead("sigmoid" if task == "multilabel" else "softmax", "task")


__all__ = ["Activation", "OutputHead", "task_head"]
