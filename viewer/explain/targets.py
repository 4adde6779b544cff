"""Regions as targets: what a map of a segmentation network explains.

A classifier's target is one output; a segmenter outputs a map per label, so its target is a region
of one label's map, and the score explained is the sum of that label's logits over the region,
``sum_ij y[label, i, j] * mask[i, j]``, as pytorch-grad-cam's ``SemanticSegmentationTarget``
defines it (Captum's segmentation tutorial sums the same way). By default the region is where the
network itself assigns the label (its own mask); a user may give another (one drawn, or one
connected component of the model's mask clicked on).

Every method explains *a score per target*: ``RegionScores`` wraps the segmenter so that its output
is exactly that, one score per region ``(B, regions)``, and every method (the CAM family, gradients,
integrated gradients, occlusion, RISE, LIME...) runs on the wrapped network unchanged, as on a
classifier whose "logits" are the regions' scores. The perturbation methods, which explain a
classifier's probability, explain the same summed logits here (there is no probability of a
region; pytorch-grad-cam's Score-CAM and Captum's Occlusion with this forward do the same).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from viewer.explain.context import ExplainContext
from viewer.inference.feature_grid import NCHW
from viewer.inference.model import LoadedModel
from viewer.inference.output_head import OutputHead
from viewer.inference.preprocess import GridTransform, resample
from viewer.inference.segmentation import label_masks, native_masks, presence
from viewer.inference.volume import VolumeTransform, onto_model_grid

# Region scores are summed logits: nothing turns them into probabilities.
REGION_SCORE = OutputHead("identity", "the sum of the label's logits over the region")
# Where the segmenter sits inside ``RegionScores``: its layer names get this prefix.
PREFIX = "network."


@dataclass(frozen=True)
class Region:
    """One target of a segmenter: a label's channel and the pixels (on the network's input grid,
    ``(H, W)``, or a 3-D segmenter's voxels ``(D, H, W)``, float 0/1) whose logits are summed."""

    label: int
    mask: torch.Tensor
    source: str = "the model's own mask"

    @property
    def pixels(self) -> int:
        return int((self.mask > 0).sum())


class RegionScores(nn.Module):
    """A segmenter seen as a classifier with one output per region: ``(B, regions)`` scores, each
    the sum of the region's label logits over its mask (the same masks for every sample of a
    batch: every batch here holds copies of one frame)."""

    def __init__(self, network: nn.Module, regions: list[Region]):
        super().__init__()
        self.network = network
        self.labels = [r.label for r in regions]
        self.register_buffer("masks", torch.stack([r.mask.float() for r in regions]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.network(x)  # (B, K, h, w), or (B, K, d, h, w) for a 3-D segmenter
        masks = self.masks.to(y.dtype)
        if tuple(y.shape[2:]) != tuple(masks.shape[1:]):
            # An output coarser than the input: the regions on the output's grid.
            masks = F.interpolate(masks[None], size=y.shape[2:], mode="nearest")[0]
        return (y[:, self.labels] * masks[None]).flatten(2).sum(dim=2)


def region_context(
    model: LoadedModel, inputs: torch.Tensor, regions: list[Region], **kwargs
) -> ExplainContext:
    """A context whose "logits" are the regions' scores on one frame's ``inputs`` ``(1, C, H, W)``;
    targets are then the regions' indices ``0 .. len(regions) - 1``."""
    layer = PREFIX + model.target_layer if model.target_layer is not None else None
    return ExplainContext(
        RegionScores(model.network, regions).to(inputs.device),
        layer,
        inputs,
        task="segmentation",
        head=REGION_SCORE,
        grid=model.grid or NCHW,
        **kwargs,
    )


@dataclass
class SegmentationPass:
    """A segmenter's outputs on the frames explained, and the regions each frame's maps explain.

    ``probabilities`` ``(frames, labels)`` is each label's largest pixel probability (it picks the
    default target); ``own`` ``(frames, labels, H, W)`` the model's masks on the input grid, the
    default regions; ``given`` maps a label to a region the caller chose, ``(rows, cols)`` or
    ``(frames of the image, rows, cols)`` on the native grid."""

    probabilities: torch.Tensor
    own: torch.Tensor
    masks: np.ndarray  # (frames, labels, rows, cols) bool: the model's masks on the native grid
    frames: tuple[int, ...]
    transform: GridTransform
    given: Mapping[str, np.ndarray]
    labels: tuple[str, ...]
    volume: bool = False  # a 3-D segmenter: one input, the series; its regions are volumes

    @classmethod
    def run(
        cls,
        model: LoadedModel,
        inputs: torch.Tensor,
        frames: Sequence[int],
        transform: GridTransform,
        given: Mapping[str, np.ndarray] | None = None,
    ) -> SegmentationPass:
        given = dict(given or {})
        unknown = [label for label in given if label not in model.manifest.labels]
        if unknown:
            raise KeyError(f"region(s) for unknown label(s) {', '.join(unknown)}")
        _, probabilities = model.segment(inputs)
        activation = model.head.activation
        if model.volume:  # (slices, labels, rows, cols) from the one input
            native = native_masks(probabilities[0], transform, activation)
        else:
            native = np.stack([native_masks(p, transform, activation) for p in probabilities])
        return cls(
            presence(probabilities),
            label_masks(probabilities, activation),
            native,
            tuple(frames),
            transform,
            given,
            model.manifest.labels,
            model.volume,
        )

    def regions(self, index: int, targets: Sequence[int]) -> list[Region]:
        """The regions of frame ``frames[index]``, one per target label."""
        out = []
        for label in targets:
            name = self.labels[label]
            if name in self.given and self.volume:
                out.append(
                    Region(label, given_volume_region(self.given[name], self.transform), "the region given")
                )
            elif name in self.given:
                mask = self.given[name]
                mask = mask[self.frames[index]] if mask.ndim == 3 else mask
                out.append(Region(label, given_region(mask, self.transform), "the region given"))
            else:
                out.append(Region(label, self.own[index, label].float()))
        return out

    def context(self, model: LoadedModel, inputs: torch.Tensor, index: int, targets: Sequence[int], **kwargs):
        """The context of frame ``frames[index]`` (``inputs`` ``(1, C, H, W)``), and its regions."""
        regions = self.regions(index, targets)
        return region_context(model, inputs, regions, **kwargs), regions

    def note(self, label: int, pixels: Sequence[int]) -> str:
        """What a map of ``label`` explains, with its region's size per frame."""
        name = self.labels[label]
        source = "the region given" if name in self.given else "the model's own mask of it"
        sizes = ", ".join(str(n) for n in pixels[:8]) + (", ..." if len(pixels) > 8 else "")
        empty = " (empty on some frames: nothing to explain there)" if min(pixels, default=0) == 0 else ""
        return f"explains the sum of {name}'s logits over {source}: {sizes} input pixels{empty}"


def given_region(mask: np.ndarray, transform: GridTransform) -> torch.Tensor:
    """A region given on the native grid ``(rows, cols)`` on the network's input grid (a pixel is
    in it where at least half of it is)."""
    return (resample(np.asarray(mask, np.float32)[None], transform)[0] >= 0.5).float()


def given_volume_region(mask: np.ndarray, transform: VolumeTransform) -> torch.Tensor:
    """A region given on the series' slices ``(slices, rows, cols)`` on a 3-D segmenter's input
    grid ``(D, H, W)``, resampled as the series is (a voxel is in it where at least half of it is)."""
    mask = np.asarray(mask)
    if mask.ndim != 3 or mask.shape != tuple(transform.shape):
        raise ValueError(
            f"a 3-D segmenter's region is one mask per slice {tuple(transform.shape)}, not {mask.shape}"
        )
    slices = (m[None].astype(np.float32) for m in mask)
    return (onto_model_grid(transform, slices)[0] >= 0.5).float()


def component_at(mask: np.ndarray, row: int, col: int) -> np.ndarray:
    """The connected component (8-connected) of a 2-D ``mask`` that holds pixel ``(row, col)``:
    the region a user clicked on. Empty if the pixel is outside the mask."""
    import SimpleITK as sitk  # here: its start-up only where a region is clicked

    mask = np.asarray(mask, bool)
    if not mask[row, col]:
        return np.zeros_like(mask)
    labelled = sitk.GetArrayFromImage(
        sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), True)  # 8-connected
    )
    return labelled == labelled[row, col]


__all__ = [
    "PREFIX",
    "REGION_SCORE",
    "Region",
    "RegionScores",
    "SegmentationPass",
    "component_at",
    "given_region",
    "given_volume_region",
    "region_context",
]
