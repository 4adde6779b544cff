"""PNG, JPEG and TIFF images (e.g. the Kaggle chest X-ray sets): single images with no patient data.

An RGB file whose three channels are equal (common for exported radiographs) is treated as grayscale.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, ImageSequence, UnidentifiedImageError

from viewer.io.errors import LoadError, describe_exception
from viewer.io.image import FrameInfo, Geometry, Identity, Image, Window
from viewer.io.sources import FileRef
from viewer.io.voi import auto_window, full_range_window

_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}
# Pillow refuses images above ~179 Mpx as decompression bombs; radiographs stay far below.
PILImage.MAX_IMAGE_PIXELS = 400_000_000


def raster_format(head: bytes) -> str | None:
    """'PNG', 'JPEG' or 'TIFF' from a file's first bytes, else None."""
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    return None


@dataclass
class RasterRecord:
    """What discovery knows about a raster file without decoding it."""

    ref: FileRef
    format: str
    rows: int
    columns: int
    frames: int
    mode: str

    # What a series asks of each of its files (``viewer.io.series.SeriesRecord``): a raster file
    # has no pixel spacing, no window and no header notes.
    @property
    def photometric(self) -> str:
        return "RGB" if self.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr") else "MONOCHROME2"

    @property
    def syntax_name(self) -> str:
        return self.format

    @property
    def spacing(self) -> tuple[float, float]:
        return (1.0, 1.0)

    @property
    def spacing_source(self) -> str:
        return "none"

    @property
    def windows(self) -> tuple:
        return ()

    @property
    def warnings(self) -> list[str]:
        return []


def read_raster_header(ref: FileRef, fmt: str) -> RasterRecord:
    try:
        with ref.stream() as fp, PILImage.open(fp) as img:
            frames = getattr(img, "n_frames", 1)
            return RasterRecord(ref, fmt, img.height, img.width, frames, img.mode)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise LoadError(str(ref), f"cannot read {fmt} image: {describe_exception(exc)}") from exc


def load_raster(record: RasterRecord) -> Image:
    """Decode a raster file into an :class:`Image` (grayscale float32, or RGB uint8)."""
    ref = record.ref
    try:
        with ref.open() as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PILImage.open(fp) as img:
                frames = [_to_array(ImageOps.exif_transpose(page)) for page in ImageSequence.Iterator(img)]
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, PILImage.DecompressionBombError) as exc:
        raise LoadError(str(ref), f"cannot decode {record.format} image: {describe_exception(exc)}") from exc
    first = frames[0]
    notes = []
    if len(frames) > 1 and any(f.shape != first.shape or f.dtype != first.dtype for f in frames):
        notes.append(f"{len(frames) - 1} further pages of a different size were ignored")
        frames = [first]
    pixels = np.stack(frames)
    color = pixels.ndim == 4
    if not color:
        pixels = pixels.astype(np.float32, copy=False)
    default = None
    windows = ()
    if not color:
        # 8-bit images are meant to be shown as stored; deeper ones get a percentile window.
        full = full_range_window(pixels) if first.dtype != np.uint8 else _eight_bit_window()
        auto = auto_window(pixels)
        windows = (full, auto)
        default = full if first.dtype == np.uint8 else auto
    name = Path(ref.member or ref.path).name
    return Image(
        pixels=pixels,
        photometric="RGB" if color else "MONOCHROME2",
        geometry=Geometry(),
        identity=Identity(series_description=name, study_description=Path(ref.path).parent.name),
        frames=tuple(FrameInfo(str(ref), i) for i in range(pixels.shape[0])),
        windows=windows,
        default_window=default,
        kind="raster",
        transfer_syntax=record.format,
        bits_stored=first.dtype.itemsize * 8 if not color else 8,
        warnings=tuple(notes),
    )


def _eight_bit_window() -> Window:
    return Window(127.5, 256.0, "LINEAR_EXACT", "Full range", "auto")


def _to_array(page: PILImage.Image) -> np.ndarray:
    mode = page.mode
    if mode in ("1", "L", "I;16", "I;16B", "I;16L", "I", "F"):
        return np.asarray(page.convert("I") if mode == "1" else page)
    if mode == "LA":
        return np.asarray(page.getchannel("L"))
    rgb = np.asarray(page.convert("RGB"))
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return np.ascontiguousarray(rgb[..., 0])  # a grayscale image saved as RGB
    return rgb
