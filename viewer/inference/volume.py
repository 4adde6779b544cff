"""A whole series as one input of a 3-D model, and the recorded transform that puts every map
back on the series' own voxel grid.

The series ``(slices, rows, cols)`` is scaled along each axis and placed (padded or cropped,
centred) in the model's ``(depth, height, width)``. The three axes are independent, so both
directions are done one axis at a time: area averaging where an axis shrinks (no aliasing of
a 512-pixel slice read at 128) and linear interpolation where it grows, as ``F.interpolate``
does in 2-D. A voxel centre maps exactly: input ``(i + 0.5) = (r + 0.5) * scale + offset``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from viewer.inference.manifest import InputSpec
from viewer.inference.preprocess import intensity_channels
from viewer.io.image import Image


@dataclass(frozen=True)
class VolumeTransform:
    """Maps model-input voxels ``size`` = (D, H, W) to the native ``shape`` = (slices, rows, cols)."""

    shape: tuple[int, int, int]
    size: tuple[int, int, int]
    scale: tuple[float, float, float]  # model voxels per native voxel, per axis
    offset: tuple[float, float, float]  # where the scaled series starts (negative: cropped)
    spacing: tuple[float, float, float]  # the series' own mm per voxel (slice, row, column)

    @property
    def model_spacing(self) -> tuple[float, float, float]:
        """mm per model-input voxel along each axis."""
        return tuple(s / k for s, k in zip(self.spacing, self.scale, strict=True))

    def describe(self) -> str:
        d, h, w = self.size
        mm = " x ".join(f"{v:.3g}" for v in self.model_spacing)
        return f"series {' x '.join(map(str, self.shape))} read as {d} x {h} x {w} voxels of {mm} mm"

    def to_native(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps ``(..., d, h, w)`` on (a scaled copy of) the model grid onto the native grid
        ``(..., slices, rows, cols)``: trilinear, edge values beyond the model grid (as
        ``grid_sample``'s border padding with ``align_corners=False``)."""
        out = maps.float()
        for axis in range(3):
            dim = out.ndim - 3 + axis
            own = out.shape[dim]
            # Native voxel centres in units of this map's voxels along the axis.
            centres = ((torch.arange(self.shape[axis]) + 0.5) * self.scale[axis] + self.offset[axis]) * (
                own / self.size[axis]
            )
            position = (centres - 0.5).clamp(0, own - 1)
            low = position.floor().long()
            high = (low + 1).clamp(max=own - 1)
            weight = (position - low).to(out.dtype)
            view = [1] * out.ndim
            view[dim] = -1
            weight = weight.view(view)
            out = out.index_select(dim, low) * (1 - weight) + out.index_select(dim, high) * weight
        return out


def volume_geometry(image: Image, spec: InputSpec) -> VolumeTransform:
    """Where the series lands in the model input: ``spec.spacing`` mm per voxel if given, else
    ``spec.resize`` of its physical extent into ``spec.size`` (letterbox and center-crop keep the
    physical aspect, one scale in mm for the three axes; stretch fills each axis)."""
    shape = (image.n_frames, image.rows, image.columns)
    spacing = tuple(float(s) for s in image.geometry.spacing)
    size = tuple(spec.size)
    if spec.spacing is not None:
        new = [max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, spec.spacing, strict=True)]
    elif spec.resize == "stretch":
        new = list(size)
    else:
        extent = [n * s for n, s in zip(shape, spacing, strict=True)]
        ratios = [k / e for k, e in zip(size, extent, strict=True)]
        per_mm = min(ratios) if spec.resize == "letterbox" else max(ratios)
        new = [max(1, round(e * per_mm)) for e in extent]
    scale = tuple(m / n for m, n in zip(new, shape, strict=True))
    offset = tuple(float((k - m) // 2) for k, m in zip(size, new, strict=True))
    return VolumeTransform(shape, size, scale, offset, spacing)


def _resize_axis(t: torch.Tensor, dim: int, length: int) -> torch.Tensor:
    """``t`` resized along ``dim`` to ``length``: area averaging when shrinking, else linear."""
    if t.shape[dim] == length:
        return t
    moved = t.movedim(dim, -1)
    lead = moved.shape[:-1]
    flat = moved.reshape(-1, 1, moved.shape[-1])
    shrinking = length < t.shape[dim]
    out = F.interpolate(
        flat, size=length, mode="area" if shrinking else "linear", align_corners=None if shrinking else False
    )
    return out.reshape(*lead, length).movedim(-1, dim)


def _place(t: torch.Tensor, size: tuple[int, ...], offset: tuple[float, ...]) -> torch.Tensor:
    """``t`` ``(C, *scaled)`` pasted into zeros ``(C, *size)`` at ``offset`` (negative offsets crop)."""
    out = torch.zeros((t.shape[0], *size), dtype=t.dtype)
    target, source = [slice(None)], [slice(None)]
    for n, k, o in zip(t.shape[1:], size, offset, strict=True):
        start = int(o)
        a, b = max(start, 0), min(start + n, k)
        target.append(slice(a, b))
        source.append(slice(a - start, b - start))
    out[tuple(target)] = t[tuple(source)]
    return out


def prepare_volume(image: Image, spec: InputSpec, in_channels: int) -> tuple[torch.Tensor, VolumeTransform]:
    """The whole series as one normalised input ``(C, D, H, W)`` and its transform. Each slice is
    read as the manifest says (windows in HU, VOI) and scaled in-plane on its own, so no
    full-resolution float copy of the volume with its channels is ever made."""
    transform = volume_geometry(image, spec)
    _, new_h, new_w = (max(1, round(n * s)) for n, s in zip(transform.shape, transform.scale, strict=True))
    slices = []
    for index in range(image.n_frames):
        values = image.frame(index)
        if image.is_color:
            values = values.astype(np.float32).mean(axis=-1)
        channels = torch.from_numpy(
            np.ascontiguousarray(
                intensity_channels(values, spec, in_channels, image=image, frame=index), np.float32
            )
        )
        slices.append(_resize_axis(_resize_axis(channels, 1, new_h), 2, new_w))
    stack = torch.stack(slices, dim=1)  # (C, slices, new_h, new_w)
    stack = _resize_axis(stack, 1, max(1, round(image.n_frames * transform.scale[0])))
    placed = _place(stack, transform.size, transform.offset)
    mean = torch.tensor(spec.mean, dtype=placed.dtype).view(-1, 1, 1, 1)
    std = torch.tensor(spec.std, dtype=placed.dtype).view(-1, 1, 1, 1)
    return (placed - mean) / std, transform
