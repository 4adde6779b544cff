"""Display mapping: real-world values -> [0, 1] grey levels (VOI, then MONOCHROME1 inversion).

Window functions follow DICOM PS3.3 C.11.2.1.2-3 exactly (LINEAR keeps its half-pixel offsets).
Inversion comes after VOI (C.7.6.3.1.2); a MONOCHROME1 image is inverted once, however its
Presentation LUT Shape is written.
"""

from __future__ import annotations

import numpy as np

from viewer.io.image import Image, VoiLut, Window

# Pixels sampled for percentile windows: enough for stable percentiles, fast on 4k x 4k images.
_AUTO_SAMPLES = 1 << 18


def apply_window(values: np.ndarray, window: Window, out: np.ndarray | None = None) -> np.ndarray:
    """Map values through a VOI window to float32 in [0, 1]."""
    c, w = float(window.center), float(window.width)
    if out is None:
        out = np.empty(values.shape, np.float32)
    if window.function == "SIGMOID":
        # y = 1 / (1 + exp(-4 (x - c) / w))
        np.subtract(values, np.float32(c), out=out, casting="unsafe")
        out *= np.float32(-4.0 / w)
        np.exp(out, out=out)
        out += 1.0
        np.reciprocal(out, out=out)
        return out
    if window.function == "LINEAR_EXACT":
        low, scale = c - w / 2, 1.0 / w
    else:  # LINEAR: y = ((x - (c - 0.5)) / (w - 1) + 0.5), clipped
        w1 = max(w - 1.0, 1e-6)
        low, scale = (c - 0.5) - w1 / 2, 1.0 / w1
    np.subtract(values, np.float32(low), out=out, casting="unsafe")
    out *= np.float32(scale)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def apply_voi_lut(values: np.ndarray, lut: VoiLut) -> np.ndarray:
    """Map values through a VOI LUT (values outside the table take its first/last entry)."""
    index = np.clip(np.rint(values) - lut.first_mapped, 0, len(lut.table) - 1).astype(np.intp)
    return lut.table[index] / np.float32(lut.output_max)


def to_display(
    image: Image,
    frame: int = 0,
    voi: Window | VoiLut | None = None,
    invert: bool | None = None,
) -> np.ndarray:
    """One frame as float32 grey levels in [0, 1] (or RGB in [0, 1] for colour images)."""
    pixels = image.frame(frame)
    if image.is_color:
        scale = 255.0 if pixels.dtype == np.uint8 else float(max(int(pixels.max()), 1))
        return pixels.astype(np.float32) / np.float32(scale)
    if voi is None:
        voi = default_voi(image) or auto_window(pixels)
    grey = apply_voi_lut(pixels, voi) if isinstance(voi, VoiLut) else apply_window(pixels, voi)
    if image.invert if invert is None else invert:
        np.subtract(1.0, grey, out=grey)
    return grey


def default_voi(image: Image) -> Window | VoiLut | None:
    """The VOI an image opens with: its default window, else the file's first VOI LUT."""
    if image.default_window is not None:
        return image.default_window
    return image.voi_luts[0] if image.voi_luts else None


def auto_window(values: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> Window:
    """A window spanning the given percentiles of the values (sampled for speed)."""
    flat = values.reshape(-1)
    if flat.size > _AUTO_SAMPLES:
        flat = flat[:: flat.size // _AUTO_SAMPLES]  # a strided view: no copy of the image
    finite = np.isfinite(flat)
    if not finite.all():
        flat = flat[finite]
    if flat.size == 0:
        return Window(0.5, 1.0, "LINEAR_EXACT", "Auto", "auto")
    low, high = np.percentile(flat, [low_pct, high_pct])
    if high <= low:
        low, high = float(flat.min()), float(flat.max())
    if high <= low:
        high = low + 1.0
    return Window((low + high) / 2, high - low, "LINEAR_EXACT", "Auto", "auto")


def full_range_window(values: np.ndarray) -> Window:
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if high <= low:
        high = low + 1.0
    return Window((low + high) / 2, high - low, "LINEAR_EXACT", "Full range", "auto")
