"""Shapes drawn on an image (rectangle, ellipse, freehand polygon) rasterised to pixel masks.

Points also come from files (measurements saved with a study, an SR), so they are checked before
Pillow sees them: finite, at most :data:`MAX_POINTS`, within :data:`MAX_COORDINATE` pixels (a
point at 1e18 would overflow Pillow's integer coordinates), on an image of a sane size. A shape
partly or wholly outside the image is clipped to it, as a drag past the image's edge draws.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

ShapeKind = Literal["rectangle", "ellipse", "polygon"]
MAX_POINTS = 100_000  # a freehand outline has hundreds; Pillow's fill costs rows x points
MAX_COORDINATE = 1e7  # pixels; Pillow converts coordinates to 32-bit integers


def _checked(points, rows: int, cols: int) -> np.ndarray:
    """``points`` as ``(n, 2)`` float64, refused with a ValueError unless each is a finite number
    within :data:`MAX_COORDINATE`."""
    if rows <= 0 or cols <= 0 or rows > 65535 or cols > 65535:
        raise ValueError(f"a {rows} x {cols} image cannot hold a shape")
    try:
        points = np.asarray(points, np.float64).reshape(-1, 2)
    except (TypeError, ValueError, OverflowError):
        raise ValueError("shape points are not (x, y) numbers") from None
    if len(points) > MAX_POINTS:
        raise ValueError(f"a shape of {len(points)} points, more than the {MAX_POINTS} allowed")
    if not np.isfinite(points).all():
        raise ValueError("a shape point is not a finite number")
    if len(points) and np.abs(points).max() > MAX_COORDINATE:
        raise ValueError(f"a shape point lies far outside the {rows} x {cols} image")
    return points


def rasterize(kind: ShapeKind, points: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A ``(rows, cols)`` bool mask of a shape. ``points`` are ``(x, y)`` in pixel coordinates
    (pixel ``(r, c)`` spans ``c..c+1`` and ``r..r+1``): two opposite corners of the bounding box for
    a rectangle or ellipse, the vertices for a polygon. Pixels whose centre lies inside are set."""
    points = _checked(points, rows, cols)
    if kind == "polygon":
        if len(points) < 3:
            raise ValueError("a polygon needs at least three points")
        canvas = PILImage.new("1", (cols, rows), 0)
        # PIL's pixel (c, r) has its centre at (c, r); ours at (c + 0.5, r + 0.5).
        ImageDraw.Draw(canvas).polygon([(x - 0.5, y - 0.5) for x, y in points], fill=1, outline=1)
        return np.array(canvas, bool)
    if kind not in ("rectangle", "ellipse"):
        raise ValueError(f"unknown shape {kind!r}")
    if len(points) != 2:
        raise ValueError(f"a {kind} needs two corner points")
    (x0, x1), (y0, y1) = np.sort(points[:, 0]), np.sort(points[:, 1])
    xs = np.arange(cols) + 0.5
    ys = np.arange(rows)[:, None] + 0.5
    if kind == "rectangle":
        return (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    rx, ry = max((x1 - x0) / 2, 1e-9), max((y1 - y0) / 2, 1e-9)
    return ((xs - (x0 + x1) / 2) / rx) ** 2 + ((ys - (y0 + y1) / 2) / ry) ** 2 <= 1.0


def bbox_of(mask: np.ndarray) -> list[int] | None:
    """[x, y, width, height] of the True pixels of a 2-D mask, or None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
