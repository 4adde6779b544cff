"""Turn an image frame into a model input, recording the geometric transform so that every output
map can be put back on the image's native pixel grid, aligned to the pixel.

The same functions feed training (models/train.py) and inference, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from viewer.inference.manifest import InputSpec
from viewer.io.image import Image, Window
from viewer.io.raster_files import pipeline_scale
from viewer.io.voi import apply_window, auto_window, to_display


@dataclass(frozen=True)
class GridTransform:
    """Maps model-input pixels to native image pixels.

    The native image (``rows`` x ``cols``) was scaled by ``scale`` (same for both axes unless
    stretched: ``scale_y``, ``scale_x``) and placed at offset (``top``, ``left``) in the model input
    (negative offsets crop). Pixel centres map exactly: input ``(i + 0.5) = (r + 0.5) * scale + top``.
    """

    rows: int
    cols: int
    size: tuple[int, int]
    scale_y: float
    scale_x: float
    top: float
    left: float

    def to_native(self, maps: torch.Tensor) -> torch.Tensor:
        """Resample maps ``(..., H, W)`` on the model-input grid onto the native grid (bilinear)."""
        lead = maps.shape[:-2]
        flat = maps.reshape(1, -1, *maps.shape[-2:]).float()
        h, w = maps.shape[-2:]
        # Native pixel centres in model-input pixel units, then in grid_sample's [-1, 1] coordinates.
        ys = ((torch.arange(self.rows) + 0.5) * self.scale_y + self.top) * (h / self.size[0])
        xs = ((torch.arange(self.cols) + 0.5) * self.scale_x + self.left) * (w / self.size[1])
        gy = ys / h * 2 - 1
        gx = xs / w * 2 - 1
        grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None]
        out = F.grid_sample(
            flat, grid.to(flat.dtype), mode="bilinear", padding_mode="border", align_corners=False
        )
        return out.reshape(*lead, self.rows, self.cols)


def intensity_channels(
    values: np.ndarray, spec: InputSpec, in_channels: int, *, image: Image | None = None, frame: int = 0
) -> np.ndarray:
    """Channels ``(C, rows, cols)`` in [0, 1] from a frame's real-world values, as the manifest says.

    With ``intensity = "voi"`` a PNG/JPEG/TIFF film has no VOI of its own: its stored values go in
    as training pipelines read them, ``x / 255`` (16-bit ``x / 65535``, see
    :func:`viewer.io.raster_files.pipeline_scale`), so the probabilities are the ones ``ToTensor`` or
    ``preprocess_input`` give on the same file. A colour image fills three channels with its
    R, G and B (``x / 255``), or its channels' mean for another count.
    """
    if spec.intensity == "windows":
        return np.stack([apply_window(values, Window(c, w, "LINEAR_EXACT")) for c, w in spec.windows])
    if spec.intensity == "voi" and image is not None and image.is_color:
        rgb = np.moveaxis(to_display(image, frame), -1, 0)
        return rgb if in_channels == rgb.shape[0] else np.repeat(rgb.mean(axis=0)[None], in_channels, axis=0)
    scale = pipeline_scale(image) if spec.intensity == "voi" and image is not None else None
    if scale is not None:
        grey = image.frame(frame).astype(np.float32) / np.float32(scale)
    elif spec.intensity == "voi" and image is not None:
        grey = to_display(image, frame)  # the file's VOI, then MONOCHROME1 inversion
    elif spec.intensity == "voi":
        grey = np.clip(values, 0.0, 1.0).astype(np.float32)  # already display values (training)
    else:
        grey = apply_window(values, auto_window(values))
        if image is not None and image.invert:
            grey = 1.0 - grey
    return np.repeat(grey[None], in_channels, axis=0)


def geometry(rows: int, cols: int, spec: InputSpec) -> GridTransform:
    """Where the native image lands in the model input. Sizes and offsets are whole pixels, and the
    recorded scales are the ones actually used, so mapping back is exact."""
    h, w = spec.size
    if spec.resize == "stretch":
        new_h, new_w = h, w
    else:
        scale = min(h / rows, w / cols) if spec.resize == "letterbox" else max(h / rows, w / cols)
        new_h, new_w = max(1, round(rows * scale)), max(1, round(cols * scale))
    top, left = (h - new_h) // 2, (w - new_w) // 2
    return GridTransform(rows, cols, (h, w), new_h / rows, new_w / cols, float(top), float(left))


def resample(channels: np.ndarray, transform: GridTransform) -> torch.Tensor:
    """Channels ``(C, rows, cols)`` onto the model grid ``(C, H, W)``: area-averaged when shrinking,
    zero padding for letterbox borders."""
    h, w = transform.size
    src = torch.from_numpy(np.ascontiguousarray(channels, dtype=np.float32))[None]
    new_h = round(transform.rows * transform.scale_y)
    new_w = round(transform.cols * transform.scale_x)
    shrinking = new_h < transform.rows and new_w < transform.cols
    scaled = F.interpolate(
        src,
        size=(new_h, new_w),
        mode="area" if shrinking else "bilinear",
        align_corners=None if shrinking else False,
    )
    out = torch.zeros((1, channels.shape[0], h, w))
    top, left = int(transform.top), int(transform.left)
    # Paste with cropping (center-crop gives negative offsets).
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + new_h, h), min(left + new_w, w)
    out[..., y0:y1, x0:x1] = scaled[..., y0 - top : y1 - top, x0 - left : x1 - left]
    return out[0]


def normalise(tensor: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    mean = torch.tensor(spec.mean, dtype=tensor.dtype).view(-1, 1, 1)
    std = torch.tensor(spec.std, dtype=tensor.dtype).view(-1, 1, 1)
    return (tensor - mean) / std


def prepare_frame(
    image: Image, frame: int, spec: InputSpec, in_channels: int
) -> tuple[torch.Tensor, GridTransform]:
    """One frame of an opened image as a normalised model input, and its transform. For a 2.5-D
    model the input holds the frames from ``neighbours`` before to ``neighbours`` after, slice by
    slice (each slice's channels together, the nearest frame repeated past the series' ends)."""
    per_slice = in_channels // spec.slices
    stack = []
    for offset in range(-spec.neighbours, spec.neighbours + 1):
        index = min(max(frame + offset, 0), image.n_frames - 1)
        values = image.frame(index)
        if image.is_color:
            values = values.astype(np.float32).mean(axis=-1)
        stack.append(intensity_channels(values, spec, per_slice, image=image, frame=index))
    channels = np.concatenate(stack) if len(stack) > 1 else stack[0]
    transform = geometry(image.rows, image.columns, spec)
    return normalise(resample(channels, transform), spec), transform


def prepare_array(values: np.ndarray, spec: InputSpec, in_channels: int) -> torch.Tensor:
    """A frame given as an array (display values for "voi", HU for "windows"): used in training."""
    channels = intensity_channels(values, spec, in_channels)
    return normalise(resample(channels, geometry(*values.shape, spec)), spec)
