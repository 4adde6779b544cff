"""Multiplanar reformatting: a CT or MR volume read as axial, coronal and sagittal planes, the way
radiologists read them. No Qt, no torch.

A volume's array is ``(slice, row, column)`` in whatever orientation it was acquired. Every
array of that shape (the pixels, a saliency map's display indices, an annotation's masks) is
read through one :class:`Reformat` as the *display volume*, whose axes run superior to inferior,
anterior to posterior and patient's right to left, so that each plane is a plain slice of it:

- axial ``V[a]`` is seen from the feet: patient's right on the viewer's left, anterior at the top;
- coronal ``V[:, c]`` is seen from the front: right on the left, superior at the top;
- sagittal ``V[:, :, s]`` is seen from the patient's left: anterior on the left, superior at the top.

Each array axis goes to the patient axis it lies nearest to (as ITK's DICOMOrientImageFilter does),
so the display volume is a view of the array (a transpose and flips, no copy). Only a series whose
slices are unevenly spaced is resampled, along the slice axis onto its median spacing, so that
every plane has one physical aspect; the transform is kept so that display indices and the
array's own voxels (and their patient coordinates) map onto each other exactly.

The even grid is sized from the slice positions before it is made: one slice 50 km from its
neighbours would otherwise ask for millions of slices. A grid beyond the budgets
(:mod:`viewer.io.budgets`: slices per series, bytes per resampled grid) is not made; the planes
then show the slices as acquired, one display slice per array slice, and ``grid_refused`` (also
among the notes) says why. Patient coordinates stay exact either way: they come from each slice's
own position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations

import numpy as np

from viewer.io.budgets import over_budget
from viewer.io.image import Image

PLANES = ("axial", "coronal", "sagittal")
# For each plane: the display axis it is normal to, then its row axis and column axis.
PLANE_AXES = {"axial": (0, 1, 2), "coronal": (1, 0, 2), "sagittal": (2, 0, 1)}
# The patient direction (LPS) each display axis increases towards: inferior, posterior, left.
_TOWARDS = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
# Orientation letters at the start and end of each display axis.
_LETTERS = (("S", "I"), ("A", "P"), ("R", "L"))
# Slice steps that differ from the median by more than this fraction are resampled.
UNEVEN_TOLERANCE = 0.05
# An acquisition grid tilted more than this from the patient axes is said so.
OBLIQUE_DEGREES = 1.0


class MprError(ValueError):
    """An image that cannot be reformatted; the message says why."""


@dataclass(frozen=True)
class Reformat:
    """How one volume's ``(slice, row, column)`` arrays are read as its display volume.

    ``axes[d]`` is the array axis shown along display axis ``d``, reversed where ``flips[d]``.
    ``slice_source`` is, for each slice of the (resampled) grid, the fractional array slice it
    lies at; it is ``None`` when the slices are evenly spaced and no resampling is needed.
    """

    array_shape: tuple[int, int, int]
    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    array_spacing: tuple[float, float, float]  # mm between slices, rows and columns of the grid
    offsets: np.ndarray  # each array slice's distance along the slice normal from the first, mm
    origin: tuple[float, float, float]
    direction: np.ndarray  # 3 x 3: unit vectors of column, row and slice index as columns
    slice_source: np.ndarray | None = None
    notes: tuple[str, ...] = field(default=())
    grid_refused: str = ""  # why uneven slices were not resampled onto an even grid ("" if they were)

    @classmethod
    def of(cls, image: Image) -> Reformat:
        """The reformat of an opened volume; :class:`MprError` says why an image has none."""
        if not image.is_volume or image.n_frames < 2:
            raise MprError("MPR needs a CT or MR series of several slices; this is a single image")
        if image.is_color:
            raise MprError("MPR shows grey-scale volumes; this series is in colour")
        geometry = image.geometry
        direction = np.asarray(geometry.direction, float).reshape(3, 3)
        normal = direction[:, 2]
        positions = [f.position for f in image.frames]
        if all(p is not None for p in positions):
            first = np.asarray(positions[0], float)
            offsets = np.array([np.dot(np.asarray(p, float) - first, normal) for p in positions])
        else:
            offsets = np.arange(image.n_frames) * geometry.spacing[0]
        steps = np.diff(offsets)
        if not (np.all(steps > 0) or np.all(steps < 0)):
            raise MprError("the slices are not in order along their normal (two share a position)")
        if steps[0] < 0:  # slices stored from the far end: the slice axis points the other way
            offsets, direction = -offsets, direction * np.array([1.0, 1.0, -1.0])
            steps = -steps
        step = float(np.median(steps))
        notes: list[str] = []
        source = None
        refused = ""
        if np.max(np.abs(steps - step)) > UNEVEN_TOLERANCE * step:
            uneven = f"uneven slice spacing ({steps.min():.2f} to {steps.max():.2f} mm)"
            refused = even_grid_refusal(float(offsets[-1] / step), image.rows * image.columns * 4)
            if refused:
                refused = f"{uneven}: {refused}; the planes show the slices as acquired"
                notes.append(refused)
            else:
                count = round(float(offsets[-1] / step)) + 1
                source = np.interp(np.arange(count) * step, offsets, np.arange(len(offsets)))
                notes.append(f"{uneven}: resampled onto {step:.2f} mm for the coronal and sagittal planes")
        axes, flips, tilt = _nearest_axes(direction)
        if tilt > OBLIQUE_DEGREES:
            notes.append(f"acquired {tilt:.0f} degrees oblique: planes follow the acquisition grid")
        origin = tuple(float(v) for v in (positions[0] if positions[0] is not None else (0.0, 0.0, 0.0)))
        spacing = (step, geometry.spacing[1], geometry.spacing[2])
        return cls(
            image.pixels.shape[:3],
            axes,
            flips,
            spacing,
            offsets,
            origin,
            direction,
            source,
            tuple(notes),
            refused,
        )

    # --- the display volume -------------------------------------------------------------------
    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """The shape of the array after resampling along the slice axis (if any)."""
        slices = self.array_shape[0] if self.slice_source is None else len(self.slice_source)
        return (slices, *self.array_shape[1:])

    @property
    def shape(self) -> tuple[int, int, int]:
        grid = self.grid_shape
        return tuple(grid[a] for a in self.axes)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """mm between neighbouring voxels along each display axis."""
        return tuple(self.array_spacing[a] for a in self.axes)

    def display(self, volume: np.ndarray, *, nearest: bool = False) -> np.ndarray:
        """``volume`` (the image's ``(slice, row, column)`` shape) as the display volume: a view,
        or a copy resampled along the slice axis (linearly, or ``nearest`` for masks and indices)."""
        if volume.shape[:3] != self.array_shape:
            raise MprError(f"a volume of {volume.shape[:3]} is not on this image's grid {self.array_shape}")
        grid = volume if self.slice_source is None else _resample(volume, self.slice_source, nearest)
        view = grid.transpose(self.axes)
        return view[tuple(slice(None, None, -1) if flip else slice(None) for flip in self.flips)]

    def plane(self, display: np.ndarray, plane: str, index: int) -> np.ndarray:
        """The ``plane`` through display index ``index`` of its normal axis: ``(rows, columns)``."""
        normal = PLANE_AXES[plane][0]
        index = int(np.clip(index, 0, display.shape[normal] - 1))
        # Basic indexing: a strided view, copied plane-sized (``np.take`` would first copy the
        # whole non-contiguous volume).
        return np.ascontiguousarray(display[(slice(None),) * normal + (index,)])

    def plane_spacing(self, plane: str) -> tuple[float, float]:
        """mm between the plane's rows and between its columns (its physical aspect)."""
        _normal, row, col = PLANE_AXES[plane]
        return self.spacing[row], self.spacing[col]

    def letters(self, plane: str) -> dict[str, str]:
        """Orientation letters at the plane's edges: ``top``, ``bottom``, ``left``, ``right``."""
        _normal, row, col = PLANE_AXES[plane]
        return {
            "top": _LETTERS[row][0],
            "bottom": _LETTERS[row][1],
            "left": _LETTERS[col][0],
            "right": _LETTERS[col][1],
        }

    # --- points ---------------------------------------------------------------------------------
    def to_array(self, point: tuple[float, float, float]) -> tuple[float, float, float]:
        """A display-volume point (display indices) as ``(slice, row, column)`` of the array
        (fractional where the slice axis was resampled)."""
        grid = [0.0, 0.0, 0.0]
        for d, (axis, flip) in enumerate(zip(self.axes, self.flips, strict=True)):
            size = self.grid_shape[axis]
            grid[axis] = size - 1 - point[d] if flip else float(point[d])
        if self.slice_source is not None:
            grid[0] = float(np.interp(grid[0], np.arange(len(self.slice_source)), self.slice_source))
        return tuple(grid)

    def from_array(self, index: tuple[float, float, float]) -> tuple[float, float, float]:
        """The inverse of :meth:`to_array`."""
        grid = [float(v) for v in index]
        if self.slice_source is not None:
            grid[0] = float(np.interp(grid[0], self.slice_source, np.arange(len(self.slice_source))))
        point = [0.0, 0.0, 0.0]
        for d, (axis, flip) in enumerate(zip(self.axes, self.flips, strict=True)):
            size = self.grid_shape[axis]
            point[d] = size - 1 - grid[axis] if flip else grid[axis]
        return tuple(point)

    def patient(self, index: tuple[float, float, float]) -> tuple[float, float, float]:
        """Patient coordinates (LPS, mm) of an array index ``(slice, row, column)``, using each
        slice's own position (so uneven spacing is exact)."""
        k, j, i = index
        along = float(np.interp(k, np.arange(len(self.offsets)), self.offsets))
        _slice, row_mm, col_mm = self.array_spacing
        point = np.asarray(self.origin) + self.direction @ np.array([i * col_mm, j * row_mm, along])
        return tuple(float(v) for v in point)

    def to_patient_index(self, point: tuple[float, float, float]) -> tuple[float, float, float]:
        """The inverse of :meth:`patient`: the array index ``(slice, row, column)`` at a patient
        point (LPS, mm), fractional; the point's distance off the slice stack is ignored."""
        _slice, row_mm, col_mm = self.array_spacing
        i_mm, j_mm, along = np.linalg.solve(
            self.direction, np.asarray(point, float) - np.asarray(self.origin)
        )
        k = float(np.interp(along, self.offsets, np.arange(len(self.offsets))))
        return (k, float(j_mm / row_mm), float(i_mm / col_mm))

    def native_frame(self, plane: str, index: int) -> int | None:
        """The array slice that display ``plane`` ``index`` is, pixel for pixel (same rows and
        columns, no flip, no resampling), or None: measuring there is measuring on that slice."""
        normal, row, col = PLANE_AXES[plane]
        if self.slice_source is not None or self.axes[normal] != 0:
            return None
        if (self.axes[row], self.axes[col]) != (1, 2) or self.flips[row] or self.flips[col]:
            return None
        size = self.array_shape[0]
        return size - 1 - index if self.flips[normal] else index

    def plane_to_patient(self, plane: str, index: int, points: np.ndarray) -> np.ndarray:
        """Points ``(n, 2)`` of ``(x, y)`` plane coordinates (pixel corners, as SCOORD) on display
        ``plane`` ``index`` as patient points ``(n, 3)`` (LPS, mm)."""
        normal, row, col = PLANE_AXES[plane]
        out = []
        for x, y in np.asarray(points, float):
            display = [0.0, 0.0, 0.0]
            display[normal], display[row], display[col] = float(index), y - 0.5, x - 0.5
            out.append(self.patient(self.to_array(tuple(display))))
        return np.asarray(out)

    def patient_to_plane(
        self, points: np.ndarray, tolerance: float = 0.05
    ) -> tuple[str, int, np.ndarray] | None:
        """Patient points ``(n, 3)`` as ``(plane, index, (n, 2) plane coordinates)`` on the first
        display plane (axial, coronal, sagittal) that holds them all within ``tolerance`` voxels,
        or None when they lie in none (an oblique or off-grid drawing)."""
        display = np.asarray([self.from_array(self.to_patient_index(p)) for p in np.asarray(points, float)])
        for plane in PLANES:
            normal, row, col = PLANE_AXES[plane]
            index = float(np.round(display[0, normal]))
            if np.all(np.abs(display[:, normal] - index) <= tolerance) and 0 <= index < self.shape[normal]:
                return plane, int(index), np.stack([display[:, col] + 0.5, display[:, row] + 0.5], axis=1)
        return None


def even_grid_refusal(span: float, slice_bytes: int) -> str:
    """Why an even grid of ``span`` steps (``span + 1`` slices of ``slice_bytes`` each) may not
    be made, or "" if it fits the budgets. Checked from the numbers alone, before any array."""
    if not np.isfinite(span) or span < 0:
        return "the slice positions give no even grid"
    count = round(span) + 1
    what = f"an even grid of {count} slices"
    return over_budget(what, count, "slices") or over_budget(what, count * slice_bytes, "grid_bytes") or ""


def _nearest_axes(direction: np.ndarray) -> tuple[tuple[int, int, int], tuple[bool, bool, bool], float]:
    """For each display axis, the array axis nearest to it and whether it runs the other way, and
    the largest angle (degrees) between an array axis and the display axis it was given."""
    # Array axis a = (slice, row, column) runs along direction column (2, 1, 0)[a].
    vectors = direction[:, [2, 1, 0]].T
    cosines = _TOWARDS @ vectors.T  # [display axis, array axis]
    axes = max(permutations(range(3)), key=lambda p: sum(abs(cosines[d, p[d]]) for d in range(3)))
    flips = tuple(bool(cosines[d, axes[d]] < 0) for d in range(3))
    tilt = max(np.degrees(np.arccos(min(1.0, abs(cosines[d, axes[d]])))) for d in range(3))
    return tuple(axes), flips, float(tilt)


def _resample(volume: np.ndarray, source: np.ndarray, nearest: bool) -> np.ndarray:
    """``volume`` at fractional slices ``source`` along axis 0."""
    if nearest:
        return volume[np.rint(source).astype(int)]
    below = np.floor(source).astype(int)
    above = np.minimum(below + 1, volume.shape[0] - 1)
    out = np.empty((len(source), *volume.shape[1:]), np.float32)
    for n, (b, a, w) in enumerate(zip(below, above, (source - below).astype(np.float32), strict=True)):
        # A slice at a time: the only copy is the resampled volume itself.
        np.multiply(volume[b], 1 - w, out=out[n], casting="unsafe")
        out[n] += w * volume[a]
    return out
