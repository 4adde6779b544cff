"""Build a network from a manifest, load its weights, and predict on images (CPU, or CUDA if present)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

from viewer.inference.checkpoint import CheckpointError, load_weights
from viewer.inference.manifest import ManifestError, ModelManifest, load_manifest
from viewer.inference.preprocess import GridTransform, prepare_frame
from viewer.io.image import Image


def build_network(manifest: ModelManifest) -> nn.Module:
    """The architecture the manifest names, with its classifier sized to the labels."""
    if manifest.arch == "torchscript":
        # TorchScript is a restricted IR: loading it runs no Python code from the file.
        return torch.jit.load(str(manifest.weights), map_location="cpu")
    try:
        network = torchvision.models.get_model(
            manifest.arch, weights=None, num_classes=manifest.n_labels, **manifest.arch_kwargs
        )
    except (ValueError, TypeError) as exc:
        raise ManifestError(manifest.path, f"cannot build network.arch {manifest.arch!r}: {exc}") from None
    if manifest.in_channels != 3:
        _set_input_channels(network, manifest.in_channels)
    return network


def _set_input_channels(network: nn.Module, channels: int) -> None:
    """Replace the first convolution with one taking ``channels`` inputs (same geometry)."""
    for name, module in network.named_modules():
        if isinstance(module, nn.Conv2d):
            parent = network.get_submodule(name.rpartition(".")[0]) if "." in name else network
            conv = nn.Conv2d(
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
    raise ValueError("the network has no Conv2d layer to adapt to the input channels")


# Adaptive pools resample to a fixed grid (VGG's 7 x 7) but hold no features of their own.
_NOT_FEATURES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout, nn.Identity)


def find_target_layer(network: nn.Module, input_shape: tuple[int, ...]) -> str:
    """The last module (in execution order) whose output still has a spatial grid of features."""
    order: list[tuple[str, tuple[int, ...]]] = []
    hooks = [
        module.register_forward_hook(lambda m, i, o, name=name: order.append((name, tuple(o.shape))))
        for name, module in network.named_modules()
        if name and not isinstance(module, _NOT_FEATURES)
    ]
    try:
        with torch.inference_mode():
            network(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    spatial = [name for name, shape in order if len(shape) == 4 and shape[-1] > 1 and shape[-2] > 1]
    if not spatial:
        raise ValueError("no layer of the network keeps a spatial grid")
    return spatial[-1]


@dataclass
class Prediction:
    """Per-frame outputs: ``logits`` and ``probabilities`` are ``(frames, labels)``."""

    labels: tuple[str, ...]
    frames: list[int]
    logits: np.ndarray
    probabilities: np.ndarray
    transforms: list[GridTransform]

    def top(self, frame_index: int = 0) -> tuple[str, float]:
        row = self.probabilities[frame_index]
        best = int(np.argmax(row))
        return self.labels[best], float(row[best])


class LoadedModel:
    """A model ready to run: network in eval mode, its manifest, target layer and device."""

    def __init__(self, manifest: ModelManifest, device: str | None = None):
        self.manifest = manifest
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        network = build_network(manifest)
        # What the weights file held (renames applied, a whole model's head), for the model doctor.
        self.checkpoint = None
        if manifest.arch != "torchscript":
            self.checkpoint = load_weights(network, manifest.weights, manifest.key_map)
        self.network = network.eval().to(self.device)
        input_shape = (manifest.in_channels, *manifest.input.size)
        self.target_layer = manifest.target_layer or find_target_layer(self.network.cpu(), input_shape)
        self.network.to(self.device)
        try:
            self.network.get_submodule(self.target_layer)
        except AttributeError:
            raise ManifestError(
                manifest.path, f"network.target_layer {self.target_layer!r} is not a module"
            ) from None

    @classmethod
    def from_manifest(cls, path: Path | str, device: str | None = None) -> LoadedModel:
        return cls(load_manifest(path), device)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.manifest.task == "multilabel" else torch.softmax(logits, dim=-1)

    def prepare(self, image: Image, frame: int = 0) -> tuple[torch.Tensor, GridTransform]:
        return prepare_frame(image, frame, self.manifest.input, self.manifest.in_channels)

    def predict(self, image: Image, frames: Sequence[int] | None = None, batch_size: int = 16) -> Prediction:
        """Logits and probabilities for the given frames (all frames by default), batched."""
        frames = list(range(image.n_frames)) if frames is None else list(frames)
        logits, transforms = [], []
        for start in range(0, len(frames), batch_size):
            batch = [self.prepare(image, f) for f in frames[start : start + batch_size]]
            transforms += [t for _, t in batch]
            inputs = torch.stack([x for x, _ in batch]).to(self.device)
            with torch.inference_mode():
                logits.append(self.network(inputs).float().cpu())
        all_logits = torch.cat(logits)
        return Prediction(
            self.manifest.labels,
            frames,
            all_logits.numpy(),
            self.probabilities(all_logits).numpy(),
            transforms,
        )


__all__ = ["CheckpointError", "LoadedModel", "Prediction", "build_network", "find_target_layer"]
