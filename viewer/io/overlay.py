"""Colour maps and saliency overlays as plain arrays (used by exports, the CLI and the GUI's LUTs).

A map's values are read by its convention: ``unit`` and ``absolute`` maps span [0, 1] and fade in
from transparent at the lower threshold; ``signed`` maps span [-1, 1] on a diverging map whose
opacity grows with the magnitude, so zero attribution stays see-through.
"""

from __future__ import annotations

import io
import json
from functools import cache

import numpy as np
from PIL import Image as PILImage

from viewer.io.image import Image
from viewer.io.voi import to_display
from viewer.resources import resource_path

COLORMAPS = ("jet", "inferno", "viridis", "hot", "diverging")


@cache
def colormap(name: str) -> np.ndarray:
    """The 256 x 3 uint8 RGB table of a colour map."""
    maps = json.loads(resource_path("colormaps.json").read_text())["maps"]
    if name not in maps:
        raise KeyError(f"unknown colour map {name!r}; known: {', '.join(maps)}")
    table = np.array([[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in maps[name]], np.uint8)
    table.setflags(write=False)
    return table


def overlay_lut(name: str, *, signed: bool = False, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """256 x 4 RGBA table for a map scaled to 0..255 (signed: -1..1 to 0..255). Alpha ramps from
    0 at ``low`` to 255 at ``high`` (of the magnitude, for signed maps), so weak saliency fades out
    and a lower threshold hides it; layer opacity is applied separately."""
    rgba = np.empty((256, 4), np.uint8)
    rgba[:, :3] = colormap(name)
    level = np.linspace(0.0, 1.0, 256)
    if signed:
        level = np.abs(level * 2 - 1)
    span = max(high - low, 1e-6)
    alpha = np.clip((level - low) / span, 0.0, 1.0)
    alpha[level < low] = 0.0
    rgba[:, 3] = np.round(alpha * 255)
    return rgba


def to_index(saliency: np.ndarray, *, signed: bool = False) -> np.ndarray:
    """Map values to LUT indices 0..255 (``[0, 1]``, or ``[-1, 1]`` when signed)."""
    values = (np.asarray(saliency, np.float32) + 1) / 2 if signed else np.asarray(saliency, np.float32)
    return np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)


# Signed gradient maps read on a diverging map: colour says the sign, opacity the magnitude.
_CONVENTION_COLORMAP = {"unit": "jet", "absolute": "jet", "signed": "diverging"}


def colormap_for(convention: str) -> str:
    """The colour map a map of this convention is shown with unless the user chose another."""
    return _CONVENTION_COLORMAP[convention]


def blend(
    grey: np.ndarray,
    saliency: np.ndarray,
    *,
    cmap: str = "jet",
    opacity: float = 0.5,
    signed: bool = False,
    low: float = 0.0,
    high: float = 1.0,
) -> np.ndarray:
    """RGB uint8 ``(rows, cols, 3)``: a display image in [0, 1] (grey ``(rows, cols)`` or RGB
    ``(rows, cols, 3)``, so layers can be stacked) with the map over it."""
    if grey.shape[:2] != saliency.shape:
        raise ValueError(f"image {grey.shape[:2]} and map {saliency.shape} differ in shape")
    return _paint(_base(grey), saliency, cmap, opacity, signed, low, high)


def _base(grey: np.ndarray) -> np.ndarray:
    """The display image as float32 0..255 with a channel axis: what every map over it shares."""
    base = np.clip(np.asarray(grey, np.float32), 0, 1) * 255
    return base[..., None] if base.ndim == 2 else base


@cache
def _lut(cmap: str, signed: bool, low: float, high: float) -> np.ndarray:
    return overlay_lut(cmap, signed=signed, low=low, high=high)  # made once per run, not per map


def _paint(base, saliency, cmap: str, opacity: float, signed: bool, low: float, high: float) -> np.ndarray:
    rgba = _lut(cmap, signed, low, high)[to_index(saliency, signed=signed)]
    alpha = rgba[..., 3:4].astype(np.float32) / 255 * opacity
    return np.rint(base * (1 - alpha) + rgba[..., :3] * alpha).astype(np.uint8)


class FramePainter:
    """One frame of an image, windowed as stored, made ready once for every map drawn over it:
    a film's five maps share its windowing and its 0..255 base (``map_over_frame`` per map)."""

    def __init__(self, image: Image, frame: int):
        self.shape = (image.rows, image.columns)
        self.base = _base(to_display(image, frame))

    def paint(self, saliency: np.ndarray, convention: str) -> np.ndarray:
        """RGB uint8: the map over the frame, as ``map_over_frame`` draws it."""
        if saliency.shape != self.shape:
            raise ValueError(f"image {self.shape} and map {saliency.shape} differ in shape")
        return _paint(self.base, saliency, colormap_for(convention), 0.5, convention == "signed", 0.05, 1.0)


def map_over_frame(image: Image, frame: int, saliency: np.ndarray, convention: str) -> np.ndarray:
    """RGB uint8: one frame of ``image``, windowed as stored, with its map (``saliency``, rows x
    cols) over it in the convention's colour map, transparent below 5 %: the picture the batch
    outputs show (``explain``'s previews, the evaluation report's best and worst images)."""
    return FramePainter(image, frame).paint(saliency, convention)


def outline_segments(mask: np.ndarray) -> np.ndarray:
    """The boundary of a boolean mask as pixel-edge segments ``(n, 4)``: ``x0, y0, x1, y1`` in pixel
    corner coordinates (pixel ``(r, c)`` spans ``c..c+1``, ``r..r+1``). Runs along a row or column
    are merged, so a view can stroke the outline with a pen of constant screen width at any zoom."""
    mask = np.asarray(mask, bool)
    segments = []
    padded = np.pad(mask, 1)
    # Horizontal edges lie between rows y-1 and y; vertical edges between columns x-1 and x.
    for edges, horizontal in (
        (padded[1:, 1:-1] != padded[:-1, 1:-1], True),
        (padded[1:-1, 1:] != padded[1:-1, :-1], False),
    ):
        lines = edges if horizontal else edges.T
        for i in np.flatnonzero(lines.any(axis=1)):
            row = np.concatenate(([False], lines[i], [False])).astype(np.int8)
            starts = np.flatnonzero(np.diff(row) == 1)
            ends = np.flatnonzero(np.diff(row) == -1)
            for a, b in zip(starts, ends, strict=True):
                segments.append((a, i, b, i) if horizontal else (i, a, i, b))
    return np.array(segments, np.float32).reshape(-1, 4)


THUMBNAIL_SIZE = 200
OUTLINE_RGB = (40, 255, 90)


def annotated_thumbnail(image: Image, saliency: np.ndarray, truth: np.ndarray, convention: str) -> bytes:
    """A PNG of the frame where the annotation is largest: the map blended over the windowed image,
    the annotation's outline on top, the long side ``THUMBNAIL_SIZE`` pixels (aspect kept)."""
    frame = int(np.argmax(truth.reshape(len(truth), -1).sum(axis=1)))
    rgb = map_over_frame(image, frame, saliency[frame], convention)
    height, width = image.rows * image.geometry.pixel_aspect, image.columns
    scale = THUMBNAIL_SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.array(PILImage.fromarray(rgb).resize(size, PILImage.BILINEAR))
    mask = np.asarray(PILImage.fromarray(truth[frame]).resize(size, PILImage.NEAREST), bool)
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    small[mask & ~inner] = OUTLINE_RGB
    buffer = io.BytesIO()
    PILImage.fromarray(small).save(buffer, format="PNG")
    return buffer.getvalue()
