"""PNG, JPEG and TIFF images (e.g. the Kaggle chest X-ray sets): single images with no patient data.

An RGB file whose three channels are equal (common for exported radiographs) is treated as grayscale.

A file's pages are held to the budgets (:mod:`viewer.io.budgets`) from their headers before any
is decoded: the page count, and pages x page size as decoded (float32 grey, RGB bytes), so fifty
12000 x 12000 pages sharing one compressed strip are refused in milliseconds. The pages are then
decoded one at a time into one preallocated array (no list of pages stacked into a copy).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, ImageSequence, UnidentifiedImageError

from viewer.io.budgets import budgets, decoded_bytes, over_budget
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
# Pillow refuses images above ~179 Mpx as decompression bombs; radiographs stay far below. The
# budget per file (checked first, from the header) is the limit that matters.
PILImage.MAX_IMAGE_PIXELS = 400_000_000
# Modes that ``_to_array`` keeps grey (one float32 value a pixel); the others become RGB.
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


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
    """The file's size, page count and mode, its pages held to the budgets (``LoadError``)."""
    try:
        with ref.stream() as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PILImage.open(fp) as img:
                record = RasterRecord(ref, fmt, img.height, img.width, _count_pages(img, ref), img.mode)
    except LoadError:
        raise
    except Exception as exc:  # Pillow raises many kinds (KeyError, TypeError, ...) on broken files
        raise LoadError(str(ref), f"cannot read {fmt} image: {_pillow_reason(exc)}") from exc
    if reason := _over_budget(record.frames, record.rows, record.columns, record.mode):
        raise LoadError(str(ref), reason)
    return record


def _count_pages(img: PILImage.Image, ref: FileRef) -> int:
    """Pages of the file, refused beyond the page budget. TIFF pages are walked (each IFD read,
    no pixels) up to one past the budget, never the whole of a hostile chain; other formats
    declare their count (APNG's acTL, MPO's index) and are refused on it."""
    if img.format != "TIFF":
        count = int(getattr(img, "n_frames", 1) or 1)
    else:
        count, limit = 1, budgets().pages
        while count <= limit:
            try:
                img.seek(count)
            except EOFError:
                break
            count += 1
        img.seek(0)
        if count > limit:
            raise LoadError(str(ref), over_budget(f"a file of more than {limit} pages", count, "pages") or "")
    if reason := over_budget(f"a file of {count} pages", count, "pages"):
        raise LoadError(str(ref), reason)
    return count


def _over_budget(pages: int, rows: int, columns: int, mode: str) -> str | None:
    """Why ``pages`` pages of ``rows x columns`` in ``mode`` would not fit the budget per file."""
    colour = mode not in _GREY_MODES
    size = (f"{pages} pages of " if pages > 1 else "") + f"{rows} x {columns}"
    decoded = decoded_bytes(rows, columns, pages, 3 if colour else 1, 8)
    return over_budget(f"{size} pixels decoded", decoded, "load_bytes")


def load_raster(record: RasterRecord) -> Image:
    """Decode a raster file into an :class:`Image` (grayscale float32, or RGB uint8)."""
    ref = record.ref
    if reason := _over_budget(record.frames, record.rows, record.columns, record.mode):
        raise LoadError(str(ref), reason)
    try:
        with ref.open() as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PILImage.open(fp) as img:
                pixels, first_dtype, notes = _decode_pages(img, record)
    except LoadError:
        raise
    except Exception as exc:  # as in read_raster_header
        raise LoadError(str(ref), f"cannot decode {record.format} image: {_pillow_reason(exc)}") from exc
    color = pixels.ndim == 4
    default = None
    windows = ()
    if not color:
        # 8-bit images are meant to be shown as stored; deeper ones get a percentile window.
        full = full_range_window(pixels) if first_dtype != np.uint8 else _eight_bit_window()
        auto = auto_window(pixels)
        windows = (full, auto)
        default = full if first_dtype == np.uint8 else auto
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
        bits_stored=first_dtype.itemsize * 8 if not color else 8,
        warnings=tuple(notes),
    )


def _decode_pages(img: PILImage.Image, record: RasterRecord) -> tuple[np.ndarray, np.dtype, list[str]]:
    """The pages (as many as the header counted) decoded one at a time into one array: float32
    grey or uint8 RGB. Pages that differ from the first in size or kind leave the first alone.
    Each page's size is checked against the budget before it is decoded (a page's header may
    differ from the first's)."""
    wanted = max(1, record.frames)
    out: np.ndarray | None = None
    first_dtype = np.dtype(np.uint8)
    notes: list[str] = []
    count = 0
    for index, page in enumerate(ImageSequence.Iterator(img)):
        if index >= wanted:
            break
        if reason := _over_budget(wanted, page.height, page.width, page.mode):
            raise LoadError(str(record.ref), reason)
        array = _to_array(ImageOps.exif_transpose(page))
        if out is None:
            first_dtype = array.dtype
            out = np.empty((wanted, *array.shape), np.uint8 if array.ndim == 3 else np.float32)
        elif array.shape != out.shape[1:] or array.dtype != first_dtype:
            notes.append(f"{record.frames - 1} further pages of a different size were ignored")
            count = 1
            break
        out[index] = array
        count += 1
    if out is None or count == 0:
        raise LoadError(str(record.ref), f"{record.format} file holds no image")
    return (out if count == wanted else out[:count].copy()), first_dtype, notes


def _pillow_reason(exc: Exception) -> str:
    """A one-line reason from what Pillow raised (its "cannot identify" names a stream object)."""
    if isinstance(exc, UnidentifiedImageError):
        return "not a readable image of this format"
    return describe_exception(exc)


def pipeline_scale(image: Image) -> float | None:
    """What a training pipeline divides a grey raster's stored values by, or None where the image
    is not such a raster.

    torchvision's ``ToTensor``, Keras' ``preprocess_input`` and notebooks read an 8-bit file as
    ``x / 255`` (16-bit: ``x / 65535``): a model trained on PNG/JPEG films expects exactly that,
    not the display window's ``(x + 0.5) / 256`` nor a percentile stretch. Deeper integer and
    float pages (Pillow's "I", "F") have no such convention and return None.
    """
    if image.kind != "raster" or image.is_color:
        return None
    return {8: 255.0, 16: 65535.0}.get(image.bits_stored or 0)


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
