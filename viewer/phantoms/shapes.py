"""Analytic shapes for the phantoms: projected path lengths, soft masks, blurs and text markers.

Everything works on coordinate grids in millimetres, so a phantom renders at any resolution with
the same anatomy; only the pixel size changes.
"""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont


def smoothstep(t: np.ndarray | float) -> np.ndarray:
    """0 below 0, 1 above 1, a smooth ramp between (used for soft edges)."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def ellipsoid_path(
    x: np.ndarray,
    y: np.ndarray,
    center: tuple[float, float],
    axes: tuple[float, float, float],
    power: float = 2.0,
) -> np.ndarray:
    """Length (mm) of a ray along z through a (super)ellipsoid, for every (x, y).

    ``axes`` = (a, b, c): half-widths along x, y and the ray. ``power`` > 2 makes it boxier.
    """
    a, b, c = axes
    q = np.abs((x - center[0]) / a) ** power + np.abs((y - center[1]) / b) ** power
    return 2.0 * c * np.sqrt(np.clip(1.0 - q, 0.0, None))


def tube_path(distance: np.ndarray, radius: float, wall: float | None = None) -> np.ndarray:
    """Path through a cylinder of ``radius`` seen side-on, at ``distance`` from its axis.

    With ``wall``, only the shell (cortical bone) counts: its edges project brighter.
    """
    outer = 2.0 * np.sqrt(np.clip(radius**2 - distance**2, 0.0, None))
    if wall is None:
        return outer
    inner_r = max(radius - wall, 0.0)
    inner = 2.0 * np.sqrt(np.clip(inner_r**2 - distance**2, 0.0, None))
    return outer - inner


def curve_distance(x: np.ndarray, y: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Approximate distance from every (x, y) to a curve given as y = f(x) samples (xs ascending).

    Measured vertically and scaled by the local slope, exact enough for gently curved bones.
    """
    inside = (x >= xs[0]) & (x <= xs[-1])
    yc = np.interp(x, xs, ys)
    slope = np.gradient(ys, xs)
    cos = 1.0 / np.sqrt(1.0 + np.interp(x, xs, slope) ** 2)
    d = np.abs(y - yc) * cos
    return np.where(inside, d, np.inf)


def box_blur(image: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Mean over a window of 2 * radius + 1 along one axis (edges replicated)."""
    if radius <= 0:
        return image
    pad = [(0, 0)] * image.ndim
    pad[axis] = (radius + 1, radius)
    c = np.cumsum(np.pad(image, pad, mode="edge"), axis=axis, dtype=np.float64)
    n = image.shape[axis]
    upper = np.take(c, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
    lower = np.take(c, np.arange(0, n), axis=axis)
    return ((upper - lower) / (2 * radius + 1)).astype(image.dtype)


def gaussian_blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur approximated by three box blurs per axis (within a few percent)."""
    if sigma_px < 0.3:
        return image
    # Box width w with three passes has variance 3 (w^2 - 1) / 12 = sigma^2.
    radius = max(1, round((np.sqrt(4 * sigma_px**2 + 1) - 1) / 2))
    out = image
    for axis in range(image.ndim):
        for _ in range(3):
            out = box_blur(out, radius, axis)
    return out


def smooth_noise(shape: tuple[int, ...], sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    """Correlated noise with unit standard deviation (texture for tissue and lesions)."""
    field = gaussian_blur(rng.standard_normal(shape).astype(np.float32), sigma_px)
    return field / max(float(field.std()), 1e-6)


def text_mask(text: str, height_px: int, bold: bool = True) -> np.ndarray:
    """A boolean raster of ``text`` about ``height_px`` tall (for burned-in markers)."""
    size = max(6, int(height_px))
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox(text, stroke_width=1 if bold else 0)
    canvas = PILImage.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(canvas).text(
        (2 - left, 2 - top), text, fill=255, font=font, stroke_width=1 if bold else 0, stroke_fill=255
    )
    return np.asarray(canvas) > 127
