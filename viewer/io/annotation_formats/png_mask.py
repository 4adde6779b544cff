"""A PNG mask: non-zero pixels are the region; it belongs to the image of the same name, and its
label is the name's part after the last ``_`` when it has one (``img001_nodule.png``).

The size in the PNG header is checked before its pixels are inflated: a few hundred bytes of zlib
can declare a 60000 x 60000 image (a decompression bomb).
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from viewer.io.annotation_formats import register
from viewer.io.annotation_formats.limits import check_file_size, image_size
from viewer.io.regions import Annotation, Region

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _sniff(path: Path, head: bytes) -> bool:
    return head.startswith(_SIGNATURE)


def read_mask(path: Path) -> np.ndarray:
    """The non-zero pixels of an image file, after checking the size its header declares; a
    ValueError saying what is wrong."""
    check_file_size(path)
    with path.open("rb") as f:
        head = f.read(24)
    if head.startswith(_SIGNATURE) and head[12:16] == b"IHDR":  # the size, before Pillow's own check
        cols, rows = struct.unpack(">II", head[16:24])
        image_size(rows, cols, "its header")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning: the size is checked here
        try:
            with PILImage.open(path) as image:
                cols, rows = image.size
                image_size(rows, cols, "its header")
                return np.asarray(image.convert("L")) > 0
        except PILImage.DecompressionBombError as exc:
            raise ValueError(str(exc)) from None
        except (OSError, SyntaxError) as exc:  # Pillow's word for a corrupt or truncated file
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"not a readable image ({reason})") from None


@register("PNG mask", _sniff)
def read(path: Path) -> Annotation:
    mask = read_mask(path)
    stem, _, label = path.stem.rpartition("_")
    return Annotation(str(path), [Region(label or "annotation", mask=mask, file=stem or path.stem)])
