"""Bounding-box CSV files as NIH ChestX-ray14 and RSNA Pneumonia publish them.

NIH ``BBox_List_2017.csv``: header ``Image Index,Finding Label,Bbox [x,y,w,h],,,``, so a CSV
reader sees the columns ``Bbox [x``, ``y``, ``w``, ``h]`` and three unnamed ones; boxes are
``x, y`` (top left), ``w, h`` in pixels of the 1024 x 1024 PNGs, which are named by ``Image
Index``. RSNA ``stage_2_train_labels.csv``: ``patientId,x,y,width,height,Target``, one row per
box, rows of negative studies with empty boxes; images are ``<patientId>.dcm``.
"""

from __future__ import annotations

from pathlib import Path

from viewer.io.annotation_formats import csv_header, register
from viewer.io.annotation_formats.limits import box_numbers, csv_rows
from viewer.io.regions import Annotation, Region, stem


def _sniff_nih(path: Path, head: bytes) -> bool:
    columns = csv_header(head)
    return "Image Index" in columns and "Finding Label" in columns


def _sniff_rsna(path: Path, head: bytes) -> bool:
    return "patientId" in csv_header(head)


def _boxes(path: Path, key_column: str, box_columns: tuple[str, ...], label_of) -> Annotation:
    annotation = Annotation(str(path))
    for n, row in csv_rows(path):
        box = [row.get(c, "") for c in box_columns]
        key = row.get(key_column, "")
        if not any(box):
            continue  # a negative study: no box
        try:
            x, y, w, h = box_numbers(box)
        except ValueError as exc:
            annotation.problems.append(f"line {n}: {exc}; line skipped")
            continue
        if w <= 0 or h <= 0 or not key:
            annotation.problems.append(f"line {n}: empty box or image name; line skipped")
            continue
        annotation.regions.append(Region(label_of(row), bbox=(x, y, w, h), file=stem(key)))
    return annotation


@register("NIH ChestX-ray14 boxes (BBox_List_2017.csv)", _sniff_nih)
def read_nih(path: Path) -> Annotation:
    return _boxes(
        path, "Image Index", ("Bbox [x", "y", "w", "h]"), lambda row: row.get("Finding Label") or "finding"
    )


@register("RSNA Pneumonia boxes (stage_2_train_labels.csv)", _sniff_rsna)
def read_rsna(path: Path) -> Annotation:
    # RSNA's detailed class file calls these "Lung Opacity"; the challenge's target is pneumonia.
    return _boxes(path, "patientId", ("x", "y", "width", "height"), lambda row: "pneumonia")
