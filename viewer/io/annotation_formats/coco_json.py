"""COCO-style instance JSON (``images``, ``annotations``, ``categories``): polygons and run
lengths decoded with pycocotools, boxes kept as boxes; images found by ``file_name``."""

from __future__ import annotations

import json
from pathlib import Path

from viewer.io.annotation_formats import register
from viewer.io.annotation_formats.coco_rle import coco_mask, pycocotools_mask
from viewer.io.regions import Annotation, AnnotationError, Region, stem


def _sniff(path: Path, head: bytes) -> bool:
    text = head.decode("utf-8", errors="replace")
    return (
        path.suffix.lower() == ".json"
        and '"annotations"' in text
        and ('"images"' in text or '"categories"' in text)
    )


@register("COCO JSON", _sniff)
def read(path: Path) -> Annotation:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or "annotations" not in data or "images" not in data:
        raise AnnotationError(path, "not a COCO JSON (needs 'images' and 'annotations')")
    images = {image["id"]: image for image in data["images"]}
    names = {c["id"]: c["name"] for c in data.get("categories", [])}
    annotation = Annotation(str(path))
    for n, item in enumerate(data["annotations"]):
        image = images.get(item.get("image_id"))
        if image is None:
            annotation.problems.append(f"annotation {n}: image_id {item.get('image_id')!r} is not in images")
            continue
        label = names.get(item.get("category_id"), str(item.get("category_id")))
        region = Region(label, file=stem(image["file_name"]))
        segmentation = item.get("segmentation")
        try:
            if isinstance(segmentation, list) and segmentation:
                rows, cols = int(image["height"]), int(image["width"])
                region.mask = coco_mask(_polygons_rle(segmentation, rows, cols))
            elif isinstance(segmentation, dict):
                region.mask = coco_mask(segmentation)
            elif item.get("bbox"):
                region.bbox = tuple(float(v) for v in item["bbox"])
            else:
                annotation.problems.append(f"annotation {n}: neither segmentation nor bbox")
                continue
        except (ValueError, TypeError, KeyError) as exc:
            annotation.problems.append(f"annotation {n}: {exc}")
            continue
        annotation.regions.append(region)
    return annotation


def _polygons_rle(polygons: list, rows: int, cols: int) -> dict:
    coco = pycocotools_mask()
    if any(len(p) < 6 for p in polygons):
        raise ValueError("a polygon with fewer than 3 points")
    merged = coco.merge(coco.frPyObjects(polygons, rows, cols))
    return {"size": merged["size"], "counts": merged["counts"]}
