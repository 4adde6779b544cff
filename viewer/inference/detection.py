"""Detection networks (``task = "detection"``): boxes with a label and a score.

One output convention for every detector, :class:`Detections`: boxes ``(N, 4)`` as
``x0, y0, x1, y1`` in continuous pixel coordinates (a box ``[0, 0, cols, rows]`` covers the whole
image), labels as the manifest's names, scores in [0, 1]. A network's raw output is read as

- torchvision's: a list (one per image) of ``{"boxes", "labels", "scores"}``, label ids ``1..K``
  for the manifest's ``labels`` in order (0 is torchvision's background);
- or three tensors ``(boxes (N, 4), scores (N,), labels (N,))`` for a batch of one (an ONNX or
  torch.export detector whose post-processing ends in them), label ids as above.

Boxes come out of the network on its input grid (torchvision's transform maps its own resize back)
and go back through the viewer's pre-processing (letterbox, stretch or crop) onto the image's own
pixels: the inverse of :func:`viewer.inference.preprocess.geometry`, edges to edges.

torchvision's detectors normalise inside (``GeneralizedRCNNTransform``); the viewer already
normalised with ``input.mean``/``input.std``, so their own mean and std are set to 0 and 1 and
their resize to the input's size: what the network sees is exactly the viewer's input. Their
backbones are built without downloaded weights (``weights_backbone = None``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torchvision
from torch import nn

from viewer.inference.feature_grid import LayerOutput
from viewer.inference.manifest import ManifestError, ModelManifest
from viewer.inference.output_head import OutputHead
from viewer.inference.preprocess import GridTransform

# torchvision builders whose output is a list of {"boxes", "labels", "scores"} per image.
TORCHVISION_DETECTORS = frozenset(torchvision.models.list_models(module=torchvision.models.detection))
# SSD builders fix their own input size (300 or 320): they take no min_size/max_size.
_FIXED_SIZE = ("ssd", "ssdlite")
# A detector's scores are probabilities already: nothing is applied to them.
DETECTION_HEAD = OutputHead("identity", "the detector's own box scores")


def torchvision_kwargs(manifest: ModelManifest, name: str) -> dict:
    """Builder arguments of a torchvision detector (empty for any other network): classes with
    the background, nothing downloaded, the viewer's normalisation and size kept as they are."""
    detector = name in TORCHVISION_DETECTORS
    if manifest.task != "detection":
        if detector:
            raise ManifestError(manifest.path, f'network.arch {name!r} is a detector: set task = "detection"')
        return {}
    if not detector:
        raise ManifestError(
            manifest.path,
            f"network.arch {name!r} is not a torchvision detector; use one of "
            f"{', '.join(sorted(TORCHVISION_DETECTORS))} (or an onnx/pt2 file, see docs/models.md)",
        )
    return {"weights_backbone": None, **detector_kwargs(manifest, resize=not name.startswith(_FIXED_SIZE))}


def detector_kwargs(manifest: ModelManifest, resize: bool = True) -> dict:
    """Arguments every torchvision detector class takes (``FasterRCNN``, ``RetinaNet``, ``FCOS``,
    ``SSD``): classes with the background, the viewer's normalisation and size kept as they are
    (``resize``: the class takes ``min_size``/``max_size``, which SSD's builders fix themselves)."""
    channels = manifest.in_channels
    kwargs: dict = {
        "num_classes": manifest.n_labels + 1,  # class 0 is the background
        "image_mean": [0.0] * channels,
        "image_std": [1.0] * channels,
    }
    if resize:
        spec = manifest.detection
        kwargs["min_size"] = (spec.min_size if spec and spec.min_size else None) or min(manifest.input.size)
        kwargs["max_size"] = (spec.max_size if spec and spec.max_size else None) or max(manifest.input.size)
    return kwargs


@dataclass(frozen=True)
class Detections:
    """One frame's boxes: ``boxes`` float32 ``(N, 4)`` ``x0, y0, x1, y1`` (on the native grid once
    :meth:`to_native`), ``labels`` the manifest's names, ``scores`` float32 ``(N,)``, highest first."""

    boxes: np.ndarray
    labels: tuple[str, ...]
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def above(self, threshold: float) -> Detections:
        """The boxes scored at least ``threshold``."""
        keep = np.flatnonzero(self.scores >= threshold)
        return Detections(self.boxes[keep], tuple(self.labels[i] for i in keep), self.scores[keep])

    def to_native(self, transform: GridTransform) -> Detections:
        return Detections(boxes_to_native(self.boxes, transform), self.labels, self.scores)

    def records(self) -> list[dict]:
        """``[{"box": [x0, y0, x1, y1], "label", "score"}]``, rounded for a file."""
        return [
            {"box": [round(float(v), 2) for v in box], "label": label, "score": round(float(score), 6)}
            for box, label, score in zip(self.boxes, self.labels, self.scores, strict=True)
        ]


def boxes_to_native(boxes: np.ndarray, transform: GridTransform) -> np.ndarray:
    """Boxes on the model-input grid as boxes on the native grid (clipped to the image): input
    edge ``x = c * scale_x + left`` for native edge ``c``, the geometry the input was made with."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    x = (boxes[:, 0::2] - transform.left) / transform.scale_x
    y = (boxes[:, 1::2] - transform.top) / transform.scale_y
    out = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)
    out[:, 0::2] = out[:, 0::2].clip(0, transform.cols)
    out[:, 1::2] = out[:, 1::2].clip(0, transform.rows)
    return out.astype(np.float32)


def boxes_to_input(boxes: np.ndarray, transform: GridTransform) -> np.ndarray:
    """Native-grid boxes on the model-input grid (the inverse of :func:`boxes_to_native`)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    x = boxes[:, 0::2] * transform.scale_x + transform.left
    y = boxes[:, 1::2] * transform.scale_y + transform.top
    return np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1).astype(np.float32)


def read_outputs(output: object, batch: int) -> list[dict[str, torch.Tensor]]:
    """A detector's raw output as one ``{"boxes", "labels", "scores"}`` per image (see the module's
    docstring for the two conventions), or ValueError saying what came instead."""
    if isinstance(output, dict):
        output = [output]
    if isinstance(output, list | tuple) and output and all(isinstance(o, dict) for o in output):
        missing = [k for k in ("boxes", "labels", "scores") if k not in output[0]]
        if missing or len(output) != batch:
            raise ValueError(
                f"a detector's output per image needs boxes, labels and scores; got {sorted(output[0])} "
                f"for {len(output)} of {batch} images"
            )
        return [{k: o[k] for k in ("boxes", "labels", "scores")} for o in output]
    if (
        isinstance(output, list | tuple)
        and len(output) == 3
        and all(isinstance(t, torch.Tensor) for t in output)
    ):
        boxes, scores, labels = output
        if batch == 1 and boxes.ndim == 3 and boxes.shape[0] == 1:  # a leading batch axis of one
            boxes, scores, labels = boxes[0], scores.reshape(-1), labels.reshape(-1)
        if (
            batch != 1
            or boxes.ndim != 2
            or boxes.shape[-1] != 4
            or not len(scores) == len(labels) == len(boxes)
        ):
            raise ValueError(
                "a detector's tensors must be boxes (N, 4), scores (N,), labels (N,) for one image; got "
                + ", ".join(str(tuple(t.shape)) for t in output)
            )
        return [{"boxes": boxes, "labels": labels, "scores": scores}]
    kind = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    raise ValueError(
        f"a detection network must output torchvision's list of {{boxes, labels, scores}} or three tensors "
        f"(boxes, scores, labels), not {kind}"
    )


def as_detections(output: dict[str, torch.Tensor], names: Sequence[str]) -> Detections:
    """One image's raw output (label ids ``1..K``) as :class:`Detections` on the input grid,
    highest score first; boxes of the background (id 0) dropped, other ids outside ``1..K`` raise
    ValueError."""
    scores = output["scores"].detach().float().cpu().numpy().reshape(-1)
    ids = output["labels"].detach().cpu().numpy().astype(np.int64).reshape(-1)
    boxes = output["boxes"].detach().float().cpu().numpy().reshape(-1, 4)
    # RetinaNet and FCOS score every class with a sigmoid, the background's too, and keep its
    # boxes: trained, it is never positive; early in training or at seeded weights it can be.
    kept = ids != 0
    scores, ids, boxes = scores[kept], ids[kept], boxes[kept]
    if len(ids) and (ids.min() < 1 or ids.max() > len(names)):
        raise ValueError(
            f"the detector outputs label ids {int(ids.min())}..{int(ids.max())} but the manifest lists "
            f"{len(names)} labels (ids 1..{len(names)}; 0 is the background)"
        )
    order = np.argsort(-scores, kind="stable")
    return Detections(boxes[order], tuple(names[i - 1] for i in ids[order]), scores[order])


def detect(
    network: nn.Module, inputs: torch.Tensor, names: Sequence[str], batch_size: int = 8
) -> list[Detections]:
    """Each input's detections ``(N, C, H, W)`` on the input grid, every score the network gives."""
    out: list[Detections] = []
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        with torch.inference_mode():
            raw = read_outputs(network(batch), len(batch))
        out += [as_detections(o, names) for o in raw]
    return out


def presence(detections: Sequence[Detections], labels: Sequence[str]) -> np.ndarray:
    """Each label's best box score per frame ``(frames, labels)`` (0 without a box): the frame's
    score for the label, which picks the default target and fills predictions.json."""
    out = np.zeros((len(detections), len(labels)), np.float32)
    for f, found in enumerate(detections):
        for label, score in zip(found.labels, found.scores, strict=True):
            k = labels.index(label)
            out[f, k] = max(out[f, k], score)
    return out


def default_layer(layers: list[LayerOutput]) -> str | None:
    """A detector's default target layer: the last gridded layer of its backbone's body (ResNet's
    ``layer4``), which every FPN level, and so every box, is computed from; else the last gridded
    layer of an SSD backbone's ``features`` (VGG's conv4_3, which every SSD level is computed from;
    SSDlite's second level), else of its backbone. None without a ``backbone``."""
    for prefix in ("backbone.body.", "backbone.features.", "backbone."):
        gridded = [layer.name for layer in layers if layer.grid is not None and layer.name.startswith(prefix)]
        if gridded:
            return gridded[-1]
    return None


__all__ = [
    "DETECTION_HEAD",
    "TORCHVISION_DETECTORS",
    "Detections",
    "as_detections",
    "boxes_to_input",
    "boxes_to_native",
    "default_layer",
    "detect",
    "detector_kwargs",
    "presence",
    "read_outputs",
    "torchvision_kwargs",
]
