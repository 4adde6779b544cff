"""VinDr-CXR ``annotations_train.csv`` / ``train.csv``: ``image_id, rad_id, class_name, x_min,
y_min, x_max, y_max`` (some releases add ``class_id``), in the DICOM's own pixels, several
radiologists per image (``R1``...``R17``); "No finding" rows have empty coordinates."""

from __future__ import annotations

from pathlib import Path

from viewer.io.annotation_formats import csv_header, register
from viewer.io.annotation_formats.limits import box_numbers, csv_rows
from viewer.io.regions import Annotation, Region, stem

_BOX = ("x_min", "y_min", "x_max", "y_max")


def _sniff(path: Path, head: bytes) -> bool:
    columns = csv_header(head)
    return "image_id" in columns and "class_name" in columns


@register("VinDr-CXR boxes", _sniff)
def read(path: Path) -> Annotation:
    annotation = Annotation(str(path))
    for n, row in csv_rows(path):
        label, box = row.get("class_name", ""), [row.get(c, "") for c in _BOX]
        if label.casefold() == "no finding" or not any(box):
            continue
        try:
            x0, y0, x1, y1 = box_numbers(box)
        except ValueError as exc:
            annotation.problems.append(f"line {n}: {exc}; line skipped")
            continue
        if x1 <= x0 or y1 <= y0:
            annotation.problems.append(f"line {n}: box {box} has no area; line skipped")
            continue
        region = Region(label, bbox=(x0, y0, x1 - x0, y1 - y0), file=stem(row.get("image_id", "")))
        region.reader = row.get("rad_id", "")
        annotation.regions.append(region)
    return annotation
