"""Build a network from a manifest, load its weights, and predict on images (CPU, or CUDA if present)."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from viewer.inference.architectures import Built, build
from viewer.inference.checkpoint import Checkpoint, CheckpointError, load_weights
from viewer.inference.detection import DETECTION_HEAD, Detections, detect
from viewer.inference.detection import default_layer as detection_layer
from viewer.inference.detection import presence as detection_presence
from viewer.inference.feature_grid import (
    FeatureGrid,
    LayerOutput,
    attention_blocks,
    choose_target_layer,
    find_target_layer,
    layer_grid,
    probe_layers,
)
from viewer.inference.manifest import ManifestError, ModelManifest, load_manifest
from viewer.inference.output_head import OutputHead, task_head
from viewer.inference.preprocess import GridTransform, prepare_frame
from viewer.inference.segmentation import (
    default_layer,
    native_masks,
    presence,
    segment,
    segmentation_head,
    take_main_output,
)
from viewer.inference.segmentation import width_error as segmentation_width_error
from viewer.inference.volume import VolumeTransform, prepare_volume
from viewer.io.image import Image


def build_network(manifest: ModelManifest) -> nn.Module:
    """The architecture the manifest names, with its classifier sized to the labels."""
    return build(manifest).network


@dataclass
class Prediction:
    """Per-frame outputs: ``logits`` and ``probabilities`` are ``(frames, labels)``. A 3-D model
    gives one output for the whole series (``per_volume``): every frame's row holds it."""

    labels: tuple[str, ...]
    frames: list[int]
    logits: np.ndarray
    probabilities: np.ndarray
    transforms: list[GridTransform]
    per_volume: bool = False
    # A segmenter's masks ``(frames, labels, rows, cols)`` bool on the native grid; its ``logits`` and
    # ``probabilities`` rows are then each label's largest over the frame's pixels.
    masks: np.ndarray | None = None
    # A detector's boxes per frame on the native grid, every score the network gives (the
    # manifest's ``detection.score_threshold`` says which count); its ``probabilities`` rows are
    # then each label's best box score.
    detections: list[Detections] | None = None

    def default_target(self) -> str:
        """The label explained when the user chose none (see :func:`default_target_index`)."""
        return self.labels[default_target_index(self.probabilities)]


def default_target_index(probabilities: np.ndarray | torch.Tensor) -> int:
    """The one target rule of the GUI and the CLI: the label most probable on any frame, so a
    haemorrhage seen on 3 of 28 slices is the series' target whichever slice is on screen."""
    p = probabilities.detach().cpu().numpy() if isinstance(probabilities, torch.Tensor) else probabilities
    return int(np.asarray(p).reshape(-1, np.shape(p)[-1]).max(axis=0).argmax())


def output_head(manifest: ModelManifest, built: Built, checkpoint: Checkpoint | None) -> OutputHead:
    """How the network's outputs become probabilities (see :mod:`viewer.inference.output_head`)."""
    if manifest.task == "detection":
        return DETECTION_HEAD
    if manifest.task == "segmentation":
        if checkpoint is not None and checkpoint.activation:
            return segmentation_head(manifest, checkpoint.activation, "the saved model's head")
        return segmentation_head(manifest, built.activation, built.activation_source)
    if manifest.output == "logits":
        return task_head(manifest.task)
    if built.activation:
        return OutputHead(built.activation, built.activation_source, built.calibrate, built.calibration)
    if checkpoint is not None and checkpoint.activation:
        # The saved model ended in it; loaded into the manifest's architecture, the network outputs logits.
        return OutputHead(checkpoint.activation, "the saved model's head")
    if manifest.output == "probabilities":
        if built.weights_inside:
            return OutputHead("identity", "network.output = probabilities")
        activation = task_head(manifest.task).activation
        return OutputHead(activation, "network.output = probabilities, the task's activation")
    return task_head(manifest.task)


_PREPARED_FRAMES = 64  # a head CT series at 224 x 224 x 3: about 40 MB


class LoadedModel:
    """A model ready to run: network in eval mode, its manifest, target layer and device.

    ``layers`` is every module's output of one probing forward pass (the model doctor lists the
    candidates); ``grid`` says how the target layer's output reads as ``(B, K, u, v)``. A network
    without module hooks (TorchScript) has no target layer: only methods that need none apply.
    """

    def __init__(
        self,
        manifest: ModelManifest,
        device: str | None = None,
        *,
        built: Built | None = None,
        layers: list[LayerOutput] | None = None,
    ):
        """``built`` and ``layers`` are given by a caller that already holds the network and its
        probed layers (an in-memory network, :mod:`viewer.inference.in_memory`): nothing is then
        built from the manifest nor probed again."""
        self.manifest = manifest
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        built = built or build(manifest)
        if manifest.task == "segmentation":
            take_main_output(built.network)  # torchvision's {"out": ...} as one tensor
        self.family = built.family
        self.hooks = built.hooks
        self.notes = list(built.notes)
        # What the weights file held (renames applied, a whole model's head), for the model doctor.
        self.checkpoint = (
            None if built.weights_inside else load_weights(built.network, manifest.weights, manifest.key_map)
        )
        self.head = output_head(manifest, built, self.checkpoint)
        self.network = built.network.eval()
        input_shape = (manifest.in_channels, *manifest.input.size)
        self.layers: list[LayerOutput] = []
        self.target_layer: str | None = None
        self.grid: FeatureGrid | None = None
        if not built.hooks:
            if manifest.target_layer:
                raise ManifestError(
                    manifest.path,
                    f"network.target_layer cannot be used with {manifest.arch}: it runs no Python hooks",
                )
        else:
            try:
                self.layers = probe_layers(self.network, input_shape) if layers is None else layers
            except RuntimeError as exc:
                raise ManifestError(
                    manifest.path,
                    f"the network does not run on input {input_shape}: {str(exc).splitlines()[0]}",
                ) from None
            self.target_layer = manifest.target_layer or _default_layer(manifest, self.network, self.layers)
            try:
                self.network.get_submodule(self.target_layer)
                self.grid = layer_grid(self.layers, self.target_layer)
            except AttributeError:
                raise ManifestError(
                    manifest.path, f"network.target_layer {self.target_layer!r} is not a module"
                ) from None
            except ValueError as exc:
                raise ManifestError(manifest.path, str(exc)) from None
        self.network.to(self.device)
        # Pre-processed frames of the images seen last: predicting, explaining and scoring the
        # same slice resample it once. Keyed by the image object (weakly: a closed image goes).
        self._prepared: OrderedDict[tuple[int, int], tuple[weakref.ref, torch.Tensor, GridTransform]] = (
            OrderedDict()
        )
        # Inputs given with provide(keep=True), by (image id, frame), while their image lives.
        self._kept: dict[tuple[int, int], tuple[weakref.ref, torch.Tensor, GridTransform]] = {}
        self.preparations = 0  # frames actually pre-processed (tests count them)
        self._volume: tuple[weakref.ref, torch.Tensor, VolumeTransform] | None = None

    @property
    def volume(self) -> bool:
        """A 3-D model: the whole series is one input ``(C, D, H, W)``."""
        return self.manifest.input.volume

    @property
    def attention(self) -> bool:
        """Whether attention methods apply: the target layer holds patch tokens and the network
        has self-attention blocks."""
        return self.grid is not None and self.grid.layout == "tokens" and bool(attention_blocks(self.network))

    @classmethod
    def from_manifest(cls, path: Path | str, device: str | None = None) -> LoadedModel:
        return cls(load_manifest(path), device)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return self.head(logits)

    def prepare(self, image: Image, frame: int = 0) -> tuple[torch.Tensor, GridTransform]:
        """The network's input for one frame and its grid transform (made once per image and
        frame; callers must not modify the tensor in place)."""
        if self.volume:
            raise ValueError(
                f"{self.manifest.name} is a 3-D model: it reads the whole series (prepare_volume)"
            )
        key = (id(image), frame)
        kept = self._kept.get(key)
        if kept is not None and kept[0]() is image:
            return kept[1], kept[2]
        hit = self._prepared.get(key)
        if hit is not None and hit[0]() is image:
            self._prepared.move_to_end(key)
            return hit[1], hit[2]
        tensor, transform = prepare_frame(image, frame, self.manifest.input, self.manifest.in_channels)
        self.preparations += 1
        self._prepared[key] = (weakref.ref(image), tensor, transform)
        while len(self._prepared) > _PREPARED_FRAMES:
            self._prepared.popitem(last=False)
        return tensor, transform

    def provide(
        self, image: Image, frame: int, tensor: torch.Tensor, transform: GridTransform, *, keep: bool = False
    ) -> None:
        """Use ``tensor`` as the network's input for ``image``'s ``frame``: a caller that holds the
        input itself (a notebook's tensor is the network's input) skips the manifest's pipeline.
        ``keep``: for as long as ``image`` lives, not only while it is among the frames seen last
        (a window keeps such an image open; the pipeline could not remake its input)."""
        if keep:
            self._kept = {k: v for k, v in self._kept.items() if v[0]() is not None}
            self._kept[(id(image), frame)] = (weakref.ref(image), tensor, transform)
            return
        self._prepared[(id(image), frame)] = (weakref.ref(image), tensor, transform)
        while len(self._prepared) > _PREPARED_FRAMES:
            self._prepared.popitem(last=False)

    def prepare_volume(self, image: Image) -> tuple[torch.Tensor, VolumeTransform]:
        """A 3-D model's input for the whole series and its transform (made once per image)."""
        if self._volume is not None and self._volume[0]() is image:
            return self._volume[1], self._volume[2]
        tensor, transform = prepare_volume(image, self.manifest.input, self.manifest.in_channels)
        self.preparations += 1
        self._volume = (weakref.ref(image), tensor, transform)
        return tensor, transform

    def _check_width(self, logits: torch.Tensor) -> None:
        error = _width_error(self.manifest, logits)
        if error is not None:
            raise error

    def predict(self, image: Image, frames: Sequence[int] | None = None, batch_size: int = 16) -> Prediction:
        """Logits and probabilities for the given frames (all frames by default), batched."""
        frames = list(range(image.n_frames)) if frames is None else list(frames)
        if self.manifest.task == "segmentation":
            return self._predict_masks(image, frames, batch_size)
        if self.manifest.task == "detection":
            return self._predict_boxes(image, frames, batch_size)
        if self.volume:
            x, _ = self.prepare_volume(image)
            with torch.inference_mode():
                logits = self.network(x[None].to(self.device)).float().cpu()
            self._check_width(logits)
            rows = logits.expand(len(frames), -1)
            return Prediction(
                self.manifest.labels,
                frames,
                rows.numpy().copy(),
                self.probabilities(rows).numpy(),
                [],
                per_volume=True,
            )
        logits, transforms = [], []
        for start in range(0, len(frames), batch_size):
            batch = [self.prepare(image, f) for f in frames[start : start + batch_size]]
            transforms += [t for _, t in batch]
            inputs = torch.stack([x for x, _ in batch]).to(self.device)
            with torch.inference_mode():
                logits.append(self.network(inputs).float().cpu())
        all_logits = torch.cat(logits)
        self._check_width(all_logits)
        return Prediction(
            self.manifest.labels,
            frames,
            all_logits.numpy(),
            self.probabilities(all_logits).numpy(),
            transforms,
        )

    def segment(self, inputs: torch.Tensor, batch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
        """A segmenter's logits and probabilities ``(N, K, H, W)`` on the input grid, width checked."""
        logits, probabilities = segment(self.network, self.head, inputs.to(self.device), batch_size)
        if (error := segmentation_width_error(self.manifest, logits)) is not None:
            raise error
        return logits, probabilities

    def detect(self, inputs: torch.Tensor, batch_size: int = 8) -> list[Detections]:
        """A detector's boxes for each of ``inputs`` ``(N, C, H, W)``, on the input grid."""
        return detect(self.network, inputs.to(self.device), self.manifest.labels, batch_size)

    def _predict_boxes(self, image: Image, frames: list[int], batch_size: int) -> Prediction:
        prepared = [self.prepare(image, f) for f in frames]
        found = self.detect(torch.stack([x for x, _ in prepared]), batch_size)
        native = [d.to_native(t) for d, (_, t) in zip(found, prepared, strict=True)]
        scores = detection_presence(native, self.manifest.labels)
        return Prediction(
            self.manifest.labels, frames, scores, scores.copy(), [t for _, t in prepared], detections=native
        )

    def _predict_masks(self, image: Image, frames: list[int], batch_size: int) -> Prediction:
        if self.volume:
            return self._predict_volume_masks(image, frames)
        prepared = [self.prepare(image, f) for f in frames]
        logits, probabilities = self.segment(torch.stack([x for x, _ in prepared]), batch_size)
        transforms = [t for _, t in prepared]
        masks = np.stack(
            [native_masks(p, t, self.head.activation) for p, t in zip(probabilities, transforms, strict=True)]
        )
        return Prediction(
            self.manifest.labels,
            frames,
            presence(logits).numpy(),
            presence(probabilities).numpy(),
            transforms,
            masks=masks,
        )

    def _predict_volume_masks(self, image: Image, frames: list[int]) -> Prediction:
        """A 3-D segmenter's masks: the series as one input, its outputs put back on each slice;
        a slice's score for a label is the label's largest logit and probability on that slice."""
        x, transform = self.prepare_volume(image)
        logits, probabilities = self.segment(x[None])
        chosen = torch.as_tensor(frames, dtype=torch.long)
        per_slice = []
        for values in (logits, probabilities):
            native = transform.to_native(values[0])  # (K, slices, rows, cols)
            per_slice.append(native.index_select(1, chosen).flatten(2).amax(dim=2).T.numpy().copy())
        masks = native_masks(probabilities[0], transform, self.head.activation)[frames]
        return Prediction(self.manifest.labels, frames, *per_slice, [], masks=masks)


def _width_error(manifest: ModelManifest, logits: torch.Tensor) -> ValueError | None:
    if logits.ndim == 2 and logits.shape[1] == manifest.n_labels:
        return None
    return ValueError(
        f"the network outputs {tuple(logits.shape[1:])} scores per image but the manifest lists "
        f"{manifest.n_labels} labels"
    )


def _default_layer(manifest: ModelManifest, network: nn.Module, layers: list[LayerOutput]) -> str:
    if manifest.task == "segmentation" and (layer := default_layer(layers, manifest.n_labels)):
        return layer
    if manifest.task == "detection" and (layer := detection_layer(layers)):
        return layer
    try:
        return choose_target_layer(network, layers)
    except ValueError as exc:
        raise ManifestError(manifest.path, f"{exc}; name one as network.target_layer") from None


__all__ = [
    "CheckpointError",
    "LoadedModel",
    "Prediction",
    "build_network",
    "find_target_layer",
    "output_head",
]
