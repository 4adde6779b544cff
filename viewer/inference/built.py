"""What building a network from a manifest gives: the network and what the file said about it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class Built:
    """A network made from a manifest, before its weights are loaded."""

    network: nn.Module
    family: str
    weights_inside: bool = False  # the weights file is the network itself (TorchScript, ONNX)
    hooks: bool = True  # module hooks work (not in TorchScript): CAM and guided methods need them
    activation: str | None = None  # "sigmoid"/"softmax" the file's own network ended with, removed
    activation_source: str = ""
    calibrate: Callable[[torch.Tensor], torch.Tensor] | None = None
    calibration: str = ""
    notes: list[str] = field(default_factory=list)
