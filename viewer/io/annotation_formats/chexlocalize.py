"""CheXlocalize's two JSON files for CheXpert validation and test images.

Annotation JSON: ``{image_id: {"img_size": [h, w], "<Task>": [[[x, y], ...], ...]}}``, contour
polygons per pathology, filled as the protocol's ``annotation_to_segmentation.py`` does
(``ImageDraw.polygon(fill=1)``). Segmentation JSON: ``{image_id: {"<Task>": {"size": [h, w],
"counts": "<COCO compressed RLE>"}}}``, decoded with pycocotools. ``image_id`` is the image's
path below the split joined with ``_`` (``patient64541_study1_view1_frontal`` for
``patient64541/study1/view1_frontal.jpg``), which is how regions find their image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from viewer.io.annotation_formats import register
from viewer.io.annotation_formats.coco_rle import RleMask
from viewer.io.annotation_formats.limits import (
    MAX_FILE_POINTS,
    AreaBudget,
    box_area,
    check_polygon,
    finite_array,
    image_size,
    read_json,
)
from viewer.io.regions import Annotation, AnnotationError, Region


def _first_record(head: bytes) -> bool:
    text = head.decode("utf-8", errors="replace").lstrip()
    return text.startswith("{") and ('"img_size"' in text or '"counts"' in text)


def _sniff(path: Path, head: bytes) -> bool:
    return path.suffix.lower() == ".json" and _first_record(head)


def polygon_mask(polygons: list, rows: int, cols: int) -> np.ndarray:
    canvas = PILImage.new("1", (cols, rows), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        draw.polygon([(float(x), float(y)) for x, y in polygon], fill=1, outline=1)
    return np.asarray(canvas, bool)


@register("CheXlocalize annotations or segmentations (JSON)", _sniff)
def read(path: Path) -> Annotation:
    data = read_json(path)
    if not isinstance(data, dict):
        raise AnnotationError(path, "not a CheXlocalize JSON (expected {image_id: {task: ...}})")
    annotation = Annotation(str(path))
    budget = _Budget()
    for image_id, tasks in data.items():
        if not isinstance(tasks, dict):
            annotation.problems.append(f"{image_id}: not a table of tasks; skipped")
            continue
        size = tasks.get("img_size")
        for task, value in tasks.items():
            if task == "img_size":
                continue
            try:
                decode = _task_mask(value, size, budget, image_id)
            except ValueError as exc:
                annotation.problems.append(f"{image_id} {task}: {exc}; skipped")
                continue
            if decode is not None:
                annotation.regions.append(Region(task, decode=decode, file=image_id))
    return annotation


class _Budget:
    """The file's polygon points and each image's region area (see ``limits``)."""

    def __init__(self) -> None:
        self.area = AreaBudget()
        self.points = 0


def _task_mask(value, size, budget: _Budget, image_id: str):
    """A decoder of the task's mask (drawn when an image of its size is opened), None for no
    region; a ValueError saying what is wrong with it."""
    if isinstance(value, dict):  # segmentation JSON: COCO RLE
        rle = RleMask(value)
        if rle.area == 0:
            return None
        budget.area.take(image_id, rle.area, rle.rows, rle.cols)
        return rle
    if size is None:
        raise ValueError("polygons without the image's img_size")
    if not isinstance(size, list) or len(size) != 2:
        raise ValueError(f"img_size {size!r} is not [height, width]")
    rows, cols = image_size(*size, "its img_size")
    if not isinstance(value, list):
        raise ValueError("not a list of polygons")
    polygons = []
    for polygon in value:
        if not polygon:
            continue
        if not isinstance(polygon, list) or not all(isinstance(p, list) and len(p) == 2 for p in polygon):
            raise ValueError("a polygon is not a list of [x, y] points")
        xy = finite_array(polygon, "a polygon")
        if len(xy) < 3:
            raise ValueError(f"a polygon with {len(xy)} point(s); a contour needs 3")
        xs, ys = xy[:, 0], xy[:, 1]
        if xs.min() < -1 or ys.min() < -1 or xs.max() > cols + 1 or ys.max() > rows + 1:
            raise ValueError(f"a polygon outside the {rows} x {cols} image")
        check_polygon(xy, rows, cols)
        polygons.append(xy)
    if not polygons:
        return None
    budget.points += sum(len(p) for p in polygons)
    if budget.points > MAX_FILE_POINTS:
        raise ValueError(f"the file's polygons hold more than {MAX_FILE_POINTS} points")
    budget.area.take(image_id, min(sum(box_area(p, rows, cols) for p in polygons), rows * cols), rows, cols)

    def decode(r: int, c: int) -> np.ndarray:
        if (r, c) != (rows, cols):
            raise ValueError(f"its polygons are for a {rows} x {cols} image (img_size), not a {r} x {c} one")
        return polygon_mask(polygons, rows, cols)

    return decode
