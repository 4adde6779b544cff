"""COCO masks: run lengths decoded here, polygons filled by pycocotools in a worker process.

Run lengths (pycocotools' compressed string, or a plain list of counts) are decoded with numpy
after checking that the counts are whole, non-negative and add up to exactly the declared image:
pycocotools' C decoder writes runs without a bound, so counts that sum past the image overwrite
memory. Polygons are filled by pycocotools (its rounding is COCO's reference; an extra:
``saliency-viewer[annotations]``) in the decoder worker process of :mod:`viewer.io.isolated_decode`,
after :func:`~viewer.io.annotation_formats.limits.check_polygon`: its C code converts coordinates
to ``int`` and sizes buffers from the outline without checks, and has crashed (SIGSEGV) on
polygons near 1e18; in the worker a crash costs the polygons of one image, not the window.

Masks are decoded lazily, for an opened image of the size the file declares, never at load.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from viewer.io.annotation_formats.limits import image_size
from viewer.io.regions import Crop

PYCOCOTOOLS_MISSING = "COCO polygons need pycocotools: pip install 'saliency-viewer[annotations]'"
_LONGEST_NUMBER = 7  # characters of one count in the compressed string (7 x 5 bits > 32)


def require_pycocotools() -> None:
    """A ValueError naming the extra when pycocotools is not installed (checked at load, so a file
    with polygons says so at once; the worker imports it)."""
    if importlib.util.find_spec("pycocotools") is None:
        raise ValueError(PYCOCOTOOLS_MISSING)


def string_counts(text: str | bytes) -> np.ndarray:
    """The counts of pycocotools' compressed RLE string (``rleFrString``): each count in 5-bit groups
    of characters from ``0``, a continuation bit, a sign, and from the fourth on a difference to the
    count two before."""
    raw = np.frombuffer(text.encode("ascii") if isinstance(text, str) else bytes(text), np.uint8)
    if raw.size == 0:
        return np.zeros(0, np.int64)
    c = raw.astype(np.int64) - 48
    if (c < 0).any() or (c > 63).any():
        raise ValueError("its RLE counts hold a character outside COCO's alphabet")
    more = (c & 0x20) != 0
    if more[-1]:
        raise ValueError("its RLE counts end inside a number (truncated)")
    ends = np.flatnonzero(~more)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > _LONGEST_NUMBER:
        raise ValueError("its RLE counts hold a number too long for a count")
    position = np.arange(raw.size) - np.repeat(starts, lengths)
    weights = ((c & 0x1F) << (5 * position)).astype(np.float64)  # < 2**35: exact in float64
    values = np.bincount(np.repeat(np.arange(ends.size), lengths), weights, ends.size).astype(np.int64)
    negative = (c[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * lengths[negative])
    counts = values.copy()
    counts[1::2] = np.cumsum(values[1::2])  # from the fourth count on: a difference to two before
    counts[2::2] = np.cumsum(values[2::2])
    return counts


def checked_counts(counts, rows: int, cols: int) -> np.ndarray:
    """Run lengths (string or list) as int64, refused unless whole, non-negative and summing to
    exactly ``rows * cols``."""
    if isinstance(counts, (str, bytes)):
        values = string_counts(counts)
    else:
        try:
            values = np.asarray(counts)
        except (ValueError, OverflowError):
            raise ValueError("its RLE counts are not a list of numbers") from None
        if values.ndim != 1 or (values.size and values.dtype.kind not in "iu"):
            raise ValueError("its RLE counts are not a list of whole numbers")
        values = values.astype(np.int64)
    if (values < 0).any():
        raise ValueError("its RLE counts hold a negative run")
    if (values > rows * cols).any():
        raise ValueError(f"its RLE counts hold a run longer than the {rows} x {cols} image")
    total = int(values.sum())  # no overflow: each at most rows * cols <= 2**28
    if total != rows * cols:
        raise ValueError(f"its RLE runs cover {total} pixels, not the {rows} x {cols} it declares")
    return values


def rle_area(counts: np.ndarray, rows: int) -> int:
    """The pixels of the bounding box of an RLE's foreground (column-major runs), without decoding."""
    ends = np.cumsum(counts)
    begin, length = (ends - counts)[1::2], counts[1::2]
    begin, length = begin[length > 0], length[length > 0]
    if begin.size == 0:
        return 0
    last = begin + length - 1
    col0, col1 = begin // rows, last // rows
    one_column = col0 == col1
    row0 = np.where(one_column, begin % rows, 0)
    row1 = np.where(one_column, last % rows, rows - 1)
    return int((col1.max() - col0.min() + 1) * (row1.max() - row0.min() + 1))


def rle_mask(counts: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The ``(rows, cols)`` bool mask of checked column-major run lengths."""
    values = (np.arange(counts.size) & 1).astype(bool)
    return np.repeat(values, counts).reshape(cols, rows).T


class RleMask:
    """One COCO RLE, checked at load and decoded when drawn on an image of its declared size."""

    def __init__(self, rle: dict):
        if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
            raise ValueError("an RLE needs 'size' and 'counts'")
        size = rle["size"]
        if not isinstance(size, list) or len(size) != 2:
            raise ValueError(f"RLE size {size!r} is not [height, width]")
        self.rows, self.cols = image_size(*size, "its RLE")
        self.counts = rle["counts"]  # the file's own text or list: no copy kept
        self.area = rle_area(checked_counts(self.counts, self.rows, self.cols), self.rows)

    def __call__(self, rows: int, cols: int) -> np.ndarray:
        if (rows, cols) != (self.rows, self.cols):
            raise ValueError(f"its RLE is for a {self.rows} x {self.cols} image, not a {rows} x {cols} one")
        return rle_mask(checked_counts(self.counts, rows, cols), rows, cols)


class PolygonBatch:
    """The polygon regions of one file on one image: filled together, in one worker job, when the
    first of them is drawn on an image of the declared size."""

    def __init__(self, source: str, rows: int, cols: int):
        self.source, self.rows, self.cols = source, rows, cols
        self._items: list[list[list[float]]] | None = []
        self._results: list[Crop | str] = []

    def add(self, polygons: list[np.ndarray]):
        """A region's decoder for its checked polygons (``(n, 2)`` arrays)."""
        if self._items is None:
            raise RuntimeError("polygons added after the batch was filled")
        self._items.append([p.ravel().tolist() for p in polygons])
        index = len(self._items) - 1
        return lambda rows, cols: self._crop(index, rows, cols)

    def _crop(self, index: int, rows: int, cols: int) -> Crop:
        if (rows, cols) != (self.rows, self.cols):
            raise ValueError(
                f"its polygons are for a {self.rows} x {self.cols} image, not a {rows} x {cols} one"
            )
        if self._items is not None:
            self._results = self._fill(self._items)
            self._items = None  # the coordinates are not needed any more
        result = self._results[index]
        if isinstance(result, str):
            raise ValueError(result)
        return result

    def _fill(self, items: list[list[list[float]]]) -> list[Crop | str]:
        from viewer.io.errors import Problem
        from viewer.io.isolated_decode import PolygonJob, shared_pool

        outcome = shared_pool().decode_one(PolygonJob(self.source, self.rows, self.cols, items))
        if isinstance(outcome, Problem):
            return [outcome.reason] * len(items)
        return [r if isinstance(r, str) else Crop(*r) for r in outcome.masks]


__all__ = [
    "PYCOCOTOOLS_MISSING",
    "PolygonBatch",
    "RleMask",
    "checked_counts",
    "require_pycocotools",
    "rle_area",
    "rle_mask",
    "string_counts",
]
