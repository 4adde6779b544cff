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


def set_input_channels(network: nn.Module, channels: int) -> None:
    """Replace the first convolution with one taking ``channels`` inputs (same geometry; 2-D, or
    3-D for a video network such as ``r3d_18``)."""
    for name, module in network.named_modules():
        if isinstance(module, nn.Conv2d | nn.Conv3d):
            if module.in_channels == channels:
                return
            parent = network.get_submodule(name.rpartition(".")[0]) if "." in name else network
            conv = type(module)(
                channels,
                module.out_channels,
                module.kernel_size,
                module.stride,
                module.padding,
                module.dilation,
                module.groups,
                module.bias is not None,
                module.padding_mode,
            )
            setattr(parent, name.rpartition(".")[2], conv)
            return
    raise ValueError("the network has no Conv2d or Conv3d layer to adapt to the input channels")
