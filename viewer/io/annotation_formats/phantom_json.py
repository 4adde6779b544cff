"""The ground truth the phantom tool writes: JSON naming PNG masks per finding and slice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from viewer.io.annotation_formats import register
from viewer.io.regions import Annotation, AnnotationError, Region


def _sniff(path: Path, head: bytes) -> bool:
    return path.suffix.lower() == ".json" and b"saliency-viewer-ground-truth/" in head


@register("saliency-viewer ground truth (JSON)", _sniff)
def read(path: Path) -> Annotation:
    record = json.loads(path.read_text())
    if not str(record.get("format", "")).startswith("saliency-viewer-ground-truth/"):
        raise AnnotationError(path, "not a saliency-viewer ground-truth file (no 'format' key)")
    root = path.parent.parent  # masks are named relative to the set's folder
    regions = []
    for finding in record["findings"]:
        for s in finding["slices"]:
            mask = np.asarray(PILImage.open(root / s["mask"])) > 0
            regions.append(
                Region(finding["label"], mask=mask, sop_instance_uid=s["sop_instance_uid"], reader="phantom")
            )
    marker = record.get("marker")
    return Annotation(str(path), regions, tuple(marker["bbox"]) if marker else None)
