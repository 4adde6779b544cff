"""Segmentation networks (``task = "segmentation"``): one output channel per label, ``(B, K, H, W)``.

A segmenter's logits become per-pixel probabilities along the channel axis (softmax when the
channels compete, as in MONAI's and torchvision's multi-class segmenters; sigmoid when each label
is its own yes/no, as in most one-finding haemorrhage or nodule networks). The model's mask of a
label is where it wins (softmax: the argmax) or where its probability exceeds 0.5 (sigmoid). The
masks are made on the network's input grid and resampled onto the image's native grid the same way
every saliency map is (probabilities resampled, then decided), so a mask and a map line up.

torchvision's segmenters return ``{"out": ..., "aux": ...}``: a forward hook hands back ``out`` alone,
so every method sees one tensor, and the state dict keeps its own names.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from viewer.inference.feature_grid import LayerOutput
from viewer.inference.manifest import ModelManifest
from viewer.inference.output_head import OutputHead
from viewer.inference.preprocess import GridTransform
from viewer.inference.volume import VolumeTransform

# torchvision builders whose output is a dict of (B, K, H, W) maps.
TORCHVISION_SEGMENTERS = frozenset(torchvision.models.list_models(module=torchvision.models.segmentation))


def torchvision_kwargs(name: str) -> dict:
    """Builder arguments a torchvision segmenter needs so that nothing is downloaded: its backbone
    would otherwise fetch ImageNet weights by default."""
    return {"weights_backbone": None} if name in TORCHVISION_SEGMENTERS else {}


def _main_output(_module: nn.Module, _args, output):
    if isinstance(output, dict) and "out" in output:
        return output["out"]
    return output


def take_main_output(network: nn.Module) -> None:
    """Make ``network`` return its ``"out"`` map where it returns a dict (torchvision's segmenters)."""
    network.register_forward_hook(_main_output)


def segmentation_head(manifest: ModelManifest, file_activation: str | None, file_source: str) -> OutputHead:
    """Per-pixel probabilities along the channel axis. The manifest's ``network.activation`` wins;
    then what the weights file's own head ended with; else softmax for several labels (competing
    classes, background included) and sigmoid for one."""
    if manifest.activation is not None:
        return OutputHead(manifest.activation, "network.activation", axis=1)
    if file_activation in ("sigmoid", "softmax"):
        return OutputHead(file_activation, file_source, axis=1)
    if manifest.output == "probabilities":
        return OutputHead("identity", "network.output = probabilities", axis=1)
    activation = "softmax" if manifest.n_labels > 1 else "sigmoid"
    return OutputHead(activation, "task (segmentation, inferred from the number of labels)", axis=1)


def on_input_grid(outputs: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """A network's ``(B, K, h, w)`` (3-D: ``(B, K, d, h, w)``) output on the input grid ``size``
    (bilinear or trilinear where the network stops short of the input's resolution, as a stride-8
    FCN without its own upsampling would)."""
    if tuple(outputs.shape[2:]) == tuple(size):
        return outputs
    mode = "trilinear" if len(size) == 3 else "bilinear"
    return F.interpolate(outputs, size=tuple(size), mode=mode, align_corners=False)


def label_masks(probabilities: torch.Tensor, activation: str) -> torch.Tensor:
    """The model's masks ``(B, K, H, W)`` bool: argmax over the channels for softmax, > 0.5 otherwise."""
    if activation == "softmax":
        winner = probabilities.argmax(dim=1)
        return F.one_hot(winner, probabilities.shape[1]).movedim(-1, 1).bool()
    return probabilities > 0.5


def presence(probabilities: torch.Tensor) -> torch.Tensor:
    """A label's largest pixel probability per frame ``(B, K)``: the frame's score for the label,
    which picks the default target and fills predictions.json as a classifier's probability does."""
    return probabilities.flatten(2).amax(dim=2)


def native_masks(
    probabilities: torch.Tensor, transform: GridTransform | VolumeTransform, activation: str
) -> np.ndarray:
    """One frame's probabilities ``(K, H, W)`` on the input grid as masks ``(K, rows, cols)`` on the
    native grid: resampled bilinearly, then decided, so borders follow the probabilities. A 3-D
    segmenter's ``(K, D, H, W)`` become ``(slices, K, rows, cols)``, a frame's masks per slice."""
    native = transform.to_native(probabilities.float())
    masks = label_masks(native[None], activation)[0].numpy()
    return masks.swapaxes(0, 1) if isinstance(transform, VolumeTransform) else masks


def segment(
    network: nn.Module,
    head: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    batch_size: int = 16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and probabilities ``(N, K, H, W)`` of ``inputs`` ``(N, C, H, W)`` on the input grid
    (a 3-D segmenter's: ``(N, K, D, H, W)`` of ``(N, C, D, H, W)``)."""
    logits = []
    for start in range(0, len(inputs), batch_size):
        with torch.inference_mode():
            y = network(inputs[start : start + batch_size])
        if not isinstance(y, torch.Tensor) or y.ndim != inputs.ndim:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            axes = "D, H, W" if inputs.ndim == 5 else "H, W"
            raise ValueError(f"a segmentation network must output (B, labels, {axes}) maps, not {shape}")
        logits.append(on_input_grid(y.float().cpu(), inputs.shape[2:]))
    out = torch.cat(logits)
    return out, head(out)


def width_error(manifest: ModelManifest, logits: torch.Tensor) -> ValueError | None:
    if logits.shape[1] == manifest.n_labels:
        return None
    return ValueError(
        f"the network outputs {logits.shape[1]} channels per pixel but the manifest lists "
        f"{manifest.n_labels} labels"
    )


def default_layer(layers: list[LayerOutput], n_labels: int) -> str | None:
    """The default target layer of a segmenter: the last gridded layer before the output head
    (whose channels are the labels'), since a CAM on the logits themselves only repaints them.
    None where every gridded layer has the labels' width (then the usual rule applies)."""
    gridded = [layer for layer in layers if layer.grid is not None]
    while gridded and len(gridded[-1].shape) > 1 and gridded[-1].shape[1] == n_labels:
        gridded.pop()
    return gridded[-1].name if gridded else None


__all__ = [
    "TORCHVISION_SEGMENTERS",
    "default_layer",
    "label_masks",
    "native_masks",
    "on_input_grid",
    "presence",
    "segment",
    "segmentation_head",
    "take_main_output",
    "torchvision_kwargs",
    "width_error",
]
