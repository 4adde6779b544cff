"""What an annotation file may declare, checked before anything is decoded or allocated.

Annotation files come from data sets and colleagues and are parsed here by numpy, Pillow,
SimpleITK, pydicom and (in a worker process) pycocotools, some of which trust sizes and
coordinates blindly: a 243-byte COCO polygon at 1e18 crashed pycocotools, a 238-byte COCO record
declaring a 60000 x 60000 image took 6.9 GB, a 486 KB gzipped label map 4 GB. So every size a
file declares is checked, and every coordinate for being a finite number near the image, before
the code that would act on it runs. A mask is decoded only for an opened image of the size it
declares (:class:`~viewer.io.regions.Region` decodes lazily), so what a file costs is bounded by
its images, never by what it claims.

Memory is bounded by the image readers' ``load_bytes`` budget (:mod:`viewer.io.budgets`, derived
from the machine's memory, ``SALIENCY_VIEWER_LOAD_BYTES`` raises it): a mask has at most as many
pixels as the largest image the viewer opens, and what one file's reader decodes at once (SEG
frames, a phantom set's PNGs, a label map, the objects of a JSON file) fits the budget. The fixed
figures below are generous for medical images and far below what would take a machine down.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from viewer.io.budgets import budgets, decoded_bytes, over_budget
from viewer.io.regions import AnnotationError

MAX_SIDE = 65535  # DICOM Rows and Columns are 16-bit; pycocotools' sizes are 32-bit
MAX_LABELS = 1024  # distinct values of a label map, segments of a SEG (TotalSegmentator has 117)
MAX_FILE_BYTES = 512 * 1024**2  # any annotation file on disk
MAX_POLYGON_POINTS = 100_000  # one contour; drawn ones have tens to hundreds
MAX_FILE_POINTS = 4_000_000  # all contours of one file
# The regions of one file on one image cover (by bounding box) at most this many times its pixels:
# a few readers' outlines of a few findings, or thousands of small nuclei, fit; thousands of
# full-image copies of one polygon (a few bytes each in the file) do not.
REGION_AREA_FACTOR = 32
# A polygon's points lie within this many image sizes outside the image (pycocotools clips them).
POLYGON_MARGIN = 1.0
# A polygon's outline, in pixels (L-infinity), is at most this many times the image's rows + cols.
PERIMETER_FACTOR = 64
MAX_COORDINATE = 1e6  # |box corner| in pixels, when no image size is known (CSV boxes)
# Python's JSON objects take up to ~16 bytes per byte of text, and ~80 per list or object.
_JSON_BYTES_PER_CHAR, _JSON_BYTES_PER_CONTAINER = 16, 80


def max_mask_pixels() -> int:
    """The most pixels one mask may have: those of the largest image the viewer opens (its float32
    pixels within the ``load_bytes`` budget)."""
    return budgets().load_bytes // decoded_bytes(1, 1)


def check_memory(what: str, nbytes: int) -> None:
    """A ValueError naming ``what`` and the budget when ``nbytes`` is beyond ``load_bytes``."""
    reason = over_budget(what, nbytes, "load_bytes")
    if reason:
        raise ValueError(reason)


def check_file_size(path: Path, limit: int = MAX_FILE_BYTES) -> int:
    """The file's size in bytes; an :class:`AnnotationError` when it is over ``limit``."""
    size = path.stat().st_size
    if size > limit:
        raise AnnotationError(
            path, f"{size / 1e6:.0f} MB, more than the {limit / 1e6:.0f} MB an annotation file may be"
        )
    return size


def csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, row)`` of a CSV file with a header, names and values stripped; a file over
    :data:`MAX_FILE_BYTES`, or a malformed line (a field over the csv module's 128 KiB limit, a
    quote never closed), ends it with an :class:`AnnotationError` naming the line."""
    check_file_size(path)
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = csv.DictReader(f)
        n = 1
        try:
            for n, row in enumerate(rows, start=2):
                yield n, {k.strip(): (v or "").strip() for k, v in row.items() if isinstance(k, str) and k}
        except csv.Error as exc:
            raise AnnotationError(path, f"line {n + 1}: not CSV ({exc})") from None
        except UnicodeDecodeError:
            raise AnnotationError(path, f"line {n + 1}: not UTF-8 text") from None


def box_numbers(values: list[str]) -> tuple[float, ...]:
    """A CSV box's numbers, each finite and within :data:`MAX_COORDINATE` pixels of the origin."""
    try:
        numbers = tuple(float(v) for v in values)
    except ValueError:
        raise ValueError(f"box {values} is not four numbers") from None
    if not all(math.isfinite(v) and abs(v) <= MAX_COORDINATE for v in numbers):
        raise ValueError(f"box {values} is not four finite numbers within an image")
    return numbers


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def read_json(path: Path):
    """A JSON file's content, refused before parsing when its objects would not fit the memory budget
    (estimated from its size and its count of lists and objects), and when nested too deeply or
    holding NaN / Infinity (not JSON, but Python's parser takes them)."""
    check_file_size(path)
    data = path.read_bytes()
    containers = data.count(b"[") + data.count(b"{")
    try:
        check_memory(
            f"the objects of its {len(data) / 1e6:.1f} MB of JSON",
            _JSON_BYTES_PER_CHAR * len(data) + _JSON_BYTES_PER_CONTAINER * containers,
        )
    except ValueError as exc:
        raise AnnotationError(path, str(exc)) from None
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise AnnotationError(path, "its JSON is nested too deeply") from None
    except UnicodeDecodeError:
        raise AnnotationError(path, "not UTF-8 text") from None
    except ValueError as exc:
        raise AnnotationError(path, f"cannot read as JSON ({str(exc).splitlines()[0]})") from None


def as_int(value, what: str) -> int:
    """An integer from a JSON or CSV value (``512`` or ``512.0``), else a ValueError naming ``what``."""
    if isinstance(value, bool):
        raise ValueError(f"{what} is {value!r}, not a number")
    if isinstance(value, str):
        value = value.strip()
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is {value!r}, not a number") from None
    if not math.isfinite(number) or number != int(number):
        raise ValueError(f"{what} is {value!r}, not a whole number")
    return int(number)


def image_size(rows, cols, whose: str) -> tuple[int, int]:
    """``(rows, cols)`` of the image or mask that ``whose`` (``"image 'a.png'"``) declares, checked
    to be one the viewer could open (:func:`max_mask_pixels`); else a ValueError saying so."""
    rows, cols = as_int(rows, f"the height {whose} declares"), as_int(cols, f"the width {whose} declares")
    if rows <= 0 or cols <= 0:
        raise ValueError(f"{whose} declares a {rows} x {cols} image, which has no pixels")
    if rows > MAX_SIDE or cols > MAX_SIDE:
        raise ValueError(f"{whose} declares a {rows} x {cols} image, more than {MAX_SIDE} rows or columns")
    reason = over_budget("one that large", decoded_bytes(rows, cols), "load_bytes")
    if reason:
        raise ValueError(f"{whose} declares a {rows} x {cols} image; {reason}")
    return rows, cols


def finite_array(values, what: str) -> np.ndarray:
    """``values`` as float64, every one a finite number; else a ValueError naming ``what``."""
    try:
        array = np.asarray(values, np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{what} holds something that is not a number") from None
    if array.dtype != np.float64 or not np.isfinite(array).all():
        raise ValueError(f"{what} holds a coordinate that is not a finite number")
    return array


def check_polygon(xy: np.ndarray, rows: int, cols: int, what: str = "a polygon") -> None:
    """A polygon of ``(n, 2)`` pixel coordinates that a rasteriser may be given for a ``rows x
    cols`` image: at least 3 and at most :data:`MAX_POLYGON_POINTS` points, each within
    :data:`POLYGON_MARGIN` image sizes of the image, its outline not absurdly long."""
    if len(xy) < 3:
        raise ValueError(f"{what} with {len(xy)} point(s); a contour needs 3")
    if len(xy) > MAX_POLYGON_POINTS:
        raise ValueError(f"{what} with {len(xy)} points, more than the {MAX_POLYGON_POINTS} allowed")
    xs, ys = xy[:, 0], xy[:, 1]
    mx, my = POLYGON_MARGIN * cols, POLYGON_MARGIN * rows
    if xs.min() < -mx or ys.min() < -my or xs.max() > cols + mx or ys.max() > rows + my:
        far = int(np.argmax((xs < -mx) | (ys < -my) | (xs > cols + mx) | (ys > rows + my)))
        raise ValueError(f"{what} has point ({xs[far]:g}, {ys[far]:g}) far outside the {rows} x {cols} image")
    steps = np.abs(np.diff(xy, axis=0, append=xy[:1])).max(axis=1).sum()
    if steps > PERIMETER_FACTOR * (rows + cols):
        raise ValueError(f"{what} whose outline is {steps:.0f} pixels long, on a {rows} x {cols} image")


def box_area(xy: np.ndarray, rows: int, cols: int) -> int:
    """The pixels of the bounding box of points ``(n, 2)``, clipped to the image."""
    x0, y0 = np.clip(xy.min(axis=0), 0, (cols, rows))
    x1, y1 = np.clip(xy.max(axis=0), 0, (cols, rows))
    return int((x1 - x0 + 1) * (y1 - y0 + 1))


class AreaBudget:
    """The bounding-box pixels of one file's regions per image, against
    :data:`REGION_AREA_FACTOR` times the image's pixels: what their decoded masks may hold."""

    def __init__(self) -> None:
        self._used: dict[object, int] = {}

    def take(self, image_key: object, area: int, rows: int, cols: int) -> None:
        """Count ``area`` pixels on the image; a ValueError when the image's budget is spent."""
        used = self._used.get(image_key, 0) + area
        if used > REGION_AREA_FACTOR * rows * cols:
            raise ValueError(
                f"the file's regions on this {rows} x {cols} image would cover more than "
                f"{REGION_AREA_FACTOR} times its pixels; the rest are left out"
            )
        self._used[image_key] = used


__all__ = [
    "MAX_FILE_BYTES",
    "MAX_LABELS",
    "AreaBudget",
    "as_int",
    "box_area",
    "box_numbers",
    "check_file_size",
    "check_memory",
    "check_polygon",
    "csv_rows",
    "finite_array",
    "image_size",
    "max_mask_pixels",
    "read_json",
]
