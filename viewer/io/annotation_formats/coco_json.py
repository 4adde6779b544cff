"""COCO-style instance JSON (``images``, ``annotations``, ``categories``): polygons and run
lengths as masks, boxes kept as boxes; images found by ``file_name``.

Every image's declared size, every polygon point, RLE count and box number is checked here before
a mask exists (:mod:`~viewer.io.annotation_formats.limits`); masks are decoded only when drawn on an
opened image of the size the file declares for it (polygons by pycocotools, in a worker process:
:mod:`~viewer.io.annotation_formats.coco_rle`). An annotation that fails a check is left out with
its reason in the annotation's problems; the rest of the file loads.
"""

from __future__ import annotations

import math
from pathlib import Path

from viewer.io.annotation_formats import register
from viewer.io.annotation_formats.coco_rle import PolygonBatch, RleMask, require_pycocotools
from viewer.io.annotation_formats.limits import (
    MAX_COORDINATE,
    MAX_FILE_POINTS,
    AreaBudget,
    box_area,
    check_polygon,
    finite_array,
    image_size,
    read_json,
)
from viewer.io.regions import Annotation, AnnotationError, Region, stem


def _sniff(path: Path, head: bytes) -> bool:
    text = head.decode("utf-8", errors="replace")
    return (
        path.suffix.lower() == ".json"
        and '"annotations"' in text
        and ('"images"' in text or '"categories"' in text)
    )


class _Image:
    """One ``images`` record: its file name and, when sound, its size (else why not)."""

    def __init__(self, record: dict):
        self.name = str(record.get("file_name", ""))
        self.key = record.get("id")
        self.size: tuple[int, int] | None = None
        self.problem = ""
        try:
            self.size = image_size(record.get("height"), record.get("width"), f"image {self.name!r}")
        except ValueError as exc:
            self.problem = str(exc)
        self.batch: PolygonBatch | None = None


@register("COCO JSON", _sniff)
def read(path: Path) -> Annotation:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise AnnotationError(path, "not a COCO JSON (needs 'images' and 'annotations' lists)")
    if not isinstance(data.get("images"), list):
        raise AnnotationError(path, "not a COCO JSON (needs 'images' and 'annotations' lists)")
    images: dict[object, _Image] = {}
    for record in data["images"]:
        if isinstance(record, dict) and _hashable(record.get("id")):
            images[record["id"]] = _Image(record)
    categories = data.get("categories", [])
    names = {
        c["id"]: str(c.get("name", c["id"]))
        for c in (categories if isinstance(categories, list) else [])
        if isinstance(c, dict) and _hashable(c.get("id"))
    }
    annotation = Annotation(str(path))
    reader = _Reader(str(path))
    for n, item in enumerate(data["annotations"]):
        if not isinstance(item, dict):
            annotation.problems.append(f"annotation {n}: not an object")
            continue
        key = item.get("image_id")
        image = images.get(key) if _hashable(key) else None
        if image is None:
            annotation.problems.append(f"annotation {n}: image_id {key!r} is not in images")
            continue
        category = item.get("category_id")
        label = names.get(category, str(category)) if _hashable(category) else str(category)
        try:
            region = reader.region(item, image, label)
        except ValueError as exc:
            annotation.problems.append(f"annotation {n}: {exc}")
            continue
        if region is None:
            annotation.problems.append(f"annotation {n}: neither segmentation nor bbox")
            continue
        annotation.regions.append(region)
    return annotation


def _hashable(value) -> bool:
    return isinstance(value, (int, str, float)) and not isinstance(value, bool)


class _Reader:
    """Checks each annotation against its image and the file's budgets and makes its region."""

    def __init__(self, source: str):
        self.source = source
        self.budget = AreaBudget()
        self.points = 0

    def region(self, item: dict, image: _Image, label: str) -> Region | None:
        segmentation = item.get("segmentation")
        region = Region(label, file=stem(image.name))
        if isinstance(segmentation, list) and segmentation:
            region.decode = self._polygons(segmentation, image)
        elif isinstance(segmentation, dict):
            region.decode = self._rle(segmentation, image)
        elif item.get("bbox"):
            region.bbox = _box(item["bbox"])
        else:
            return None
        return region

    def _size(self, image: _Image) -> tuple[int, int]:
        if image.size is None:
            raise ValueError(image.problem)
        return image.size

    def _polygons(self, segmentation: list, image: _Image):
        rows, cols = self._size(image)
        require_pycocotools()
        polygons = []
        for polygon in segmentation:
            if not isinstance(polygon, list) or len(polygon) % 2:
                raise ValueError("a polygon is not a flat list of x, y pairs")
            xy = finite_array(polygon, "a polygon").reshape(-1, 2)
            check_polygon(xy, rows, cols)
            polygons.append(xy)
        self.points += sum(len(p) for p in polygons)
        if self.points > MAX_FILE_POINTS:
            raise ValueError(
                f"the file's polygons hold more than {MAX_FILE_POINTS} points; this one is left out"
            )
        area = min(sum(box_area(p, rows, cols) for p in polygons), rows * cols)
        self.budget.take(image.key, area, rows, cols)
        if image.batch is None:
            image.batch = PolygonBatch(self.source, rows, cols)
        return image.batch.add(polygons)

    def _rle(self, segmentation: dict, image: _Image) -> RleMask:
        rows, cols = self._size(image)
        rle = RleMask(segmentation)
        if (rle.rows, rle.cols) != (rows, cols):
            raise ValueError(f"its RLE is {rle.rows} x {rle.cols}, its image {image.name!r} {rows} x {cols}")
        self.budget.take(image.key, rle.area, rows, cols)
        return rle


def _box(values) -> tuple[float, float, float, float]:
    """A COCO box ``[x, y, w, h]``: four finite numbers of sane size, with an area."""
    if not isinstance(values, list) or len(values) != 4:
        raise ValueError(f"bbox {values!r} is not [x, y, width, height]")
    x, y, w, h = (float(v) for v in finite_array(values, "bbox"))
    if w <= 0 or h <= 0:
        raise ValueError(f"bbox {values!r} has no area")
    if max(abs(x), abs(y), abs(x + w), abs(y + h)) > MAX_COORDINATE or not math.isfinite(x + w + y + h):
        raise ValueError(f"bbox {values!r} lies far outside any image")
    return x, y, w, h
