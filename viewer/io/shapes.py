"""Shapes drawn on an image (rectangle, ellipse, freehand polygon) rasterised to pixel masks."""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

ShapeKind = Literal["rectangle", "ellipse", "polygon"]


def rasterize(kind: ShapeKind, points: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A ``(rows, cols)`` bool mask of a shape. ``points`` are ``(x, y)`` in pixel coordinates
    (pixel ``(r, c)`` spans ``c..c+1`` and ``r..r+1``): two opposite corners of the bounding box for
    a rectangle or ellipse, the vertices for a polygon. Pixels whose centre lies inside are set."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
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
