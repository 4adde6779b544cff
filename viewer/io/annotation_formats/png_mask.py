"""A PNG mask: non-zero pixels are the region; it belongs to the image of the same name, and its
label is the name's part after the last ``_`` when it has one (``img001_nodule.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from viewer.io.annotation_formats import register
from viewer.io.regions import Annotation, Region


def _sniff(path: Path, head: bytes) -> bool:
    return head.startswith(b"\x89PNG\r\n\x1a\n")


@register("PNG mask", _sniff)
def read(path: Path) -> Annotation:
    mask = np.asarray(PILImage.open(path).convert("L")) > 0
    stem, _, label = path.stem.rpartition("_")
    return Annotation(str(path), [Region(label or "annotation", mask=mask, file=stem or path.stem)])
