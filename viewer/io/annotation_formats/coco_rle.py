"""COCO run-length masks through pycocotools (an extra: ``saliency-viewer[annotations]``)."""

from __future__ import annotations

import numpy as np


def pycocotools_mask():
    """pycocotools' RLE codec, or an error naming the extra that installs it."""
    try:
        from pycocotools import mask
    except ImportError:
        raise ValueError(
            "COCO run lengths need pycocotools: pip install 'saliency-viewer[annotations]'"
        ) from None
    return mask


def coco_mask(rle: dict) -> np.ndarray:
    """A COCO RLE (compressed string or uncompressed list of counts) as a bool mask."""
    coco = pycocotools_mask()
    counts = rle["counts"]
    size = [int(v) for v in rle["size"]]
    if isinstance(counts, list):
        encoded = coco.frPyObjects({"size": size, "counts": counts}, *size)
    else:
        encoded = {"size": size, "counts": counts.encode() if isinstance(counts, str) else counts}
    return coco.decode(encoded).astype(bool)
