"""A whole series as one input of a 3-D model, and the recorded transform that puts every map
back on the series' own voxel grid.

The series ``(slices, rows, cols)`` is scaled along each axis and placed (padded or cropped,
centred) in the model's ``(depth, height, width)``. The three axes are independent, so both
directions are done one axis at a time: area averaging where an axis shrinks (no aliasing of
a 512-pixel slice read at 128) and linear interpolation where it grows, as ``F.interpolate``
does in 2-D. A voxel centre maps exactly: input ``(i + 0.5) = (r + 0.5) * scale + offset``.

Only what lands in the model's input is computed: where the scaled series is larger than the
input along an axis (``spacing`` finer than a hostile header's, a slice 50 km away) just the
voxels inside it are interpolated, so the work is bounded by the model's size, not the series'
claims. The even grid for unevenly spaced slices is sized from the positions first and not made
beyond the budgets (:mod:`viewer.io.budgets`); the slices are then read in the series' order,
with a note saying why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from viewer.inference.manifest import InputSpec
from viewer.inference.preprocess import intensity_channels
from viewer.io.image import Image
from viewer.io.mpr import MprError, Reformat, even_grid_refusal


@dataclass(frozen=True)
class VolumeTransform:
    """Maps model-input voxels ``size`` = (D, H, W) to the native ``shape`` = (slices, rows, cols).

    Unevenly spaced slices (a missing one, a change of increment) are first put on an even grid
    of ``even_slices`` at the median spacing: ``slice_at`` holds each native slice's fractional
    place on it (None: evenly spaced, slice k at k), and ``scale[0]`` counts per even slice.
    """

    shape: tuple[int, int, int]
    size: tuple[int, int, int]
    scale: tuple[float, float, float]  # model voxels per native voxel, per axis
    offset: tuple[float, float, float]  # where the scaled series starts (negative: cropped)
    spacing: tuple[float, float, float]  # the series' own mm per voxel (slice, row, column)
    slice_at: tuple[float, ...] | None = None
    even_slices: int = 0
    notes: tuple[str, ...] = ()

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """The evenly spaced grid the model input was made from."""
        return (self.even_slices or self.shape[0], *self.shape[1:])

    @property
    def model_spacing(self) -> tuple[float, float, float]:
        """mm per model-input voxel along each axis."""
        return tuple(s / k for s, k in zip(self.spacing, self.scale, strict=True))

    def describe(self) -> str:
        d, h, w = self.size
        mm = " x ".join(f"{v:.3g}" for v in self.model_spacing)
        said = f"series {' x '.join(map(str, self.shape))} read as {d} x {h} x {w} voxels of {mm} mm"
        return "; ".join((said, *self.notes))

    def to_native(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps ``(..., d, h, w)`` on (a scaled copy of) the model grid onto the native grid
        ``(..., slices, rows, cols)``: trilinear, edge values beyond the model grid (as
        ``grid_sample``'s border padding with ``align_corners=False``)."""
        out = maps.float()
        for axis in range(3):
            dim = out.ndim - 3 + axis
            own = out.shape[dim]
            # Native voxel centres in units of this map's voxels along the axis.
            place = torch.arange(self.shape[axis], dtype=torch.float64)
            if axis == 0 and self.slice_at is not None:
                place = torch.tensor(self.slice_at, dtype=torch.float64)
            centres = ((place + 0.5) * self.scale[axis] + self.offset[axis]) * (own / self.size[axis])
            position = (centres - 0.5).clamp(0, own - 1)
            low = position.floor().long()
            high = (low + 1).clamp(max=own - 1)
            weight = (position - low).to(out.dtype)
            view = [1] * out.ndim
            view[dim] = -1
            weight = weight.view(view)
            out = out.index_select(dim, low) * (1 - weight) + out.index_select(dim, high) * weight
        return out


def volume_geometry(image: Image, spec: InputSpec, channels: int = 1) -> VolumeTransform:
    """Where the series lands in the model input: ``spec.spacing`` mm per voxel if given, else
    ``spec.resize`` of its physical extent into ``spec.size`` (letterbox and center-crop keep the
    physical aspect, one scale in mm for the three axes; stretch fills each axis). ``channels``
    sizes the even grid of unevenly spaced slices against the grid budget."""
    native = (image.n_frames, image.rows, image.columns)
    spacing = tuple(float(s) for s in image.geometry.spacing)
    shape, slice_at, notes = native, None, ()
    if image.is_volume and image.n_frames > 1:
        try:
            reformat = Reformat.of(image)  # slice spacing from the positions, as the MPR reads them
        except MprError:
            reformat = None
            notes = ("slice positions out of order: slices read in the series' order",)
        if reformat is not None:
            step = reformat.array_spacing[0]
            spacing = (step, *spacing[1:])
            if reformat.slice_source is not None or reformat.grid_refused:
                gaps = np.diff(reformat.offsets)
                uneven = f"uneven slice spacing ({gaps.min():.2f} to {gaps.max():.2f} mm)"
                # The even grid holds each slice at (at most) the model's in-plane size, per channel.
                plane = channels * spec.size[1] * spec.size[2] * 4
                refused = even_grid_refusal(float(reformat.offsets[-1] / step), plane)
                if refused:
                    notes = (f"{uneven}: {refused}; slices read in the series' order",)
                else:
                    slice_at = tuple(float(v) for v in reformat.offsets / step)
                    shape = (round(float(reformat.offsets[-1] / step)) + 1, *native[1:])
                    notes = (f"{uneven} resampled onto {step:.2f} mm before the model",)
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
    return VolumeTransform(native, size, scale, offset, spacing, slice_at, shape[0] if slice_at else 0, notes)


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


def _window(length: int, size: int, offset: float) -> tuple[int, int]:
    """The part ``[a, b)`` of an axis scaled to ``length`` that lands inside a model axis of
    ``size`` when the scaled axis starts at ``offset`` (negative: cropped)."""
    start = int(offset)
    a = min(max(0, -start), length)
    return a, max(a, min(length, size - start))


def _resize_window(t: torch.Tensor, dim: int, length: int, a: int, b: int) -> torch.Tensor:
    """``_resize_axis(t, dim, length)`` narrowed to ``[a, b)``. Where the axis grows and most of
    it is cropped away, only ``[a, b)`` is interpolated (linear, ``align_corners=False``, the
    source clamped at 0, as ``F.interpolate`` does): a header that scales a series to millions of
    voxels costs what the model's input holds."""
    n = t.shape[dim]
    if (a, b) == (0, length) or length <= n:
        return _resize_axis(t, dim, length).narrow(dim, a, b - a)
    place = torch.arange(a, b, dtype=torch.float64)
    source = ((place + 0.5) * (n / length) - 0.5).clamp(min=0)
    low = source.floor().long().clamp(max=n - 1)
    high = (low + 1).clamp(max=n - 1)
    view = [1] * t.ndim
    view[dim] = -1
    weight = (source - low).to(t.dtype).view(view)
    return t.index_select(dim, low) * (1 - weight) + t.index_select(dim, high) * weight


def _even_slices(stack: torch.Tensor, slice_at: tuple[float, ...], count: int) -> torch.Tensor:
    """``stack`` ``(C, slices, h, w)`` linearly interpolated onto ``count`` evenly spaced slices,
    native slice k lying at even index ``slice_at[k]``."""
    source = np.interp(np.arange(count), np.asarray(slice_at), np.arange(len(slice_at)))
    below = torch.from_numpy(np.floor(source).astype(np.int64)).clamp(max=stack.shape[1] - 1)
    above = (below + 1).clamp(max=stack.shape[1] - 1)
    weight = torch.from_numpy(source - np.floor(source)).to(stack.dtype).view(1, -1, 1, 1)
    return stack.index_select(1, below) * (1 - weight) + stack.index_select(1, above) * weight


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
    if image.n_frames < 2:
        raise ValueError("a 3-D model reads a series of slices; this image has one frame")
    transform = volume_geometry(image, spec, in_channels)

    def channels(index: int) -> np.ndarray:
        values = image.frame(index)
        if image.is_color:
            values = values.astype(np.float32).mean(axis=-1)
        return intensity_channels(values, spec, in_channels, image=image, frame=index)

    placed = onto_model_grid(transform, (channels(i) for i in range(image.n_frames)))
    mean = torch.tensor(spec.mean, dtype=placed.dtype).view(-1, 1, 1, 1)
    std = torch.tensor(spec.std, dtype=placed.dtype).view(-1, 1, 1, 1)
    return (placed - mean) / std, transform


def onto_model_grid(transform: VolumeTransform, slices: Iterable[np.ndarray]) -> torch.Tensor:
    """Native slices, each ``(C, rows, cols)`` in the series' order, as ``(C, D, H, W)`` on the
    model grid of ``transform``: the resampling the series' input is made with (a region drawn on
    the slices lands where the model sees those voxels)."""
    grid = transform.grid_shape
    new_d, new_h, new_w = (max(1, round(n * s)) for n, s in zip(grid, transform.scale, strict=True))
    windows = [
        _window(m, k, o)
        for m, k, o in zip((new_d, new_h, new_w), transform.size, transform.offset, strict=True)
    ]
    (depth_a, depth_b), (rows_a, rows_b), (cols_a, cols_b) = windows
    resized = []
    for values in slices:
        channels = torch.from_numpy(np.ascontiguousarray(values, np.float32))
        rows = _resize_window(channels, 1, new_h, rows_a, rows_b)
        resized.append(_resize_window(rows, 2, new_w, cols_a, cols_b))
    stack = torch.stack(resized, dim=1)  # (C, slices, rows kept, columns kept)
    if transform.slice_at is not None:
        stack = _even_slices(stack, transform.slice_at, grid[0])
    stack = _resize_window(stack, 1, new_d, depth_a, depth_b)
    starts = tuple(o + a for o, (a, _) in zip(transform.offset, windows, strict=True))
    return _place(stack, transform.size, starts)
