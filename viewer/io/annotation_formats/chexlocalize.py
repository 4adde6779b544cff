"""CheXlocalize's two JSON files for CheXpert validation and test images.

Annotation JSON: ``{image_id: {"img_size": [h, w], "<Task>": [[[x, y], ...], ...]}}``, contour
polygons per pathology, filled as the protocol's ``annotation_to_segmentation.py`` does
(``ImageDraw.polygon(fill=1)``). Segmentation JSON: ``{image_id: {"<Task>": {"size": [h, w],
"counts": "<COCO compressed RLE>"}}}``, decoded with pycocotools. ``image_id`` is the image's
path below the split joined with ``_`` (``patient64541_study1_view1_frontal`` for
``patient64541/study1/view1_frontal.jpg``), which is how regions find their image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from viewer.io.annotation_formats import register
from viewer.io.annotation_formats.coco_rle import coco_mask
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
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise AnnotationError(path, "not a CheXlocalize JSON (expected {image_id: {task: ...}})")
    annotation = Annotation(str(path))
    for image_id, tasks in data.items():
        if not isinstance(tasks, dict):
            annotation.problems.append(f"{image_id}: not a table of tasks; skipped")
            continue
        size = tasks.get("img_size")
        for task, value in tasks.items():
            if task == "img_size":
                continue
            try:
                mask = _task_mask(value, size)
            except (ValueError, TypeError, KeyError) as exc:
                annotation.problems.append(f"{image_id} {task}: {exc}; skipped")
                continue
            if mask is not None and mask.any():
                annotation.regions.append(Region(task, mask=mask, file=image_id))
    return annotation


def _task_mask(value, size) -> np.ndarray | None:
    if isinstance(value, dict):  # segmentation JSON: COCO RLE
        return coco_mask(value)
    if size is None:
        raise ValueError("polygons without the image's img_size")
    rows, cols = (int(v) for v in size)
    polygons = [p for p in value if p]
    for polygon in polygons:
        if len(polygon) < 3:
            raise ValueError(f"a polygon with {len(polygon)} point(s); a contour needs 3")
        xs, ys = zip(*polygon, strict=True)
        if min(xs) < -1 or min(ys) < -1 or max(xs) > cols + 1 or max(ys) > rows + 1:
            raise ValueError(f"a polygon outside the {rows} x {cols} image")
    return polygon_mask(polygons, rows, cols) if polygons else None
