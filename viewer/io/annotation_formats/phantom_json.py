"""The ground truth the phantom tool writes: JSON naming PNG masks per finding and slice.

Mask names are relative to the set's folder and must stay inside it, as regular files (not a
FIFO that would block, not ``/dev/zero``); a mask named by several slices is read once, and all
the masks of one file together stay within the ``load_bytes`` budget.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from viewer.io.annotation_formats import register
from viewer.io.annotation_formats.limits import check_memory, finite_array, read_json
from viewer.io.annotation_formats.png_mask import read_mask
from viewer.io.regions import Annotation, AnnotationError, Region


def _sniff(path: Path, head: bytes) -> bool:
    return path.suffix.lower() == ".json" and b"saliency-viewer-ground-truth/" in head


@register("saliency-viewer ground truth (JSON)", _sniff)
def read(path: Path) -> Annotation:
    record = read_json(path)
    if not isinstance(record, dict) or not str(record.get("format", "")).startswith(
        "saliency-viewer-ground-truth/"
    ):
        raise AnnotationError(path, "not a saliency-viewer ground-truth file (no 'format' key)")
    masks = _Masks(path)
    regions = []
    findings = record.get("findings")
    if not isinstance(findings, list):
        raise AnnotationError(path, "its 'findings' is not a list")
    for n, finding in enumerate(findings):
        if not isinstance(finding, dict) or not isinstance(finding.get("slices"), list):
            raise AnnotationError(path, f"finding {n} has no list of slices")
        for item in finding["slices"]:
            if not isinstance(item, dict):
                raise AnnotationError(path, f"finding {n}: a slice is not an object")
            regions.append(
                Region(
                    str(finding.get("label", "finding")),
                    mask=masks.read(item.get("mask")),
                    sop_instance_uid=str(item.get("sop_instance_uid", "")),
                    reader="phantom",
                )
            )
    marker = record.get("marker")
    if marker and not isinstance(marker, dict):
        raise AnnotationError(path, "its 'marker' is not an object")
    return Annotation(str(path), regions, _marker(marker.get("bbox")) if marker else None)


class _Masks:
    """The set's PNG masks, each read once, within the set's folder and the file's pixel budget."""

    def __init__(self, path: Path):
        self.path = path
        self.root = path.parent.parent.resolve()  # masks are named relative to the set's folder
        self.read_masks: dict[Path, np.ndarray] = {}
        self.pixels = 0

    def read(self, name) -> np.ndarray:
        if not isinstance(name, str) or not name:
            raise AnnotationError(self.path, f"mask {name!r} is not a file name")
        file = (self.root / name).resolve()
        if not file.is_relative_to(self.root):
            raise AnnotationError(self.path, f"mask {name!r} lies outside the set's folder {self.root}")
        if file not in self.read_masks:
            if not file.is_file():
                raise AnnotationError(self.path, f"mask {name!r} is not a file")
            try:
                mask = read_mask(file)
            except ValueError as exc:
                raise AnnotationError(self.path, f"mask {name!r}: {exc}") from None
            self.pixels += mask.size
            try:
                check_memory("its masks", self.pixels)
            except ValueError as exc:
                raise AnnotationError(self.path, str(exc)) from None
            mask.flags.writeable = False  # shared by the slices that name it
            self.read_masks[file] = mask
        return self.read_masks[file]


def _marker(values) -> tuple[int, int, int, int]:
    """The burned-in marker's box ``(x, y, w, h)``: four finite whole numbers."""
    if not isinstance(values, list) or len(values) != 4:
        raise ValueError(f"marker bbox {values!r} is not [x, y, width, height]")
    box = finite_array(values, "marker bbox")
    if np.abs(box).max() > 1e6:
        raise ValueError(f"marker bbox {values!r} lies far outside any image")
    x, y, w, h = (int(v) for v in box)
    return x, y, w, h
