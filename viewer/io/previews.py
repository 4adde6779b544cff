"""The picture files a batch run writes beside each map (``explain``'s previews): PNG, JPEG or none.

The ``.npy`` maps are the results; a preview is for a person to glance at, so it is encoded fast.
A PNG here is written by hand, as the format allows: each row filtered by "Up" (the difference to
the row above, which suits smooth overlays) and deflated by Intel's ISA-L at level 1 (python-isal,
zlib's level 1 where it is missing). A 512 x 512 overlay takes about 2 ms and 230 kB, where
Pillow's default (zlib level 6) took about 60 ms and 200 kB: at five maps a film, Pillow's PNG
encoding was a quarter of a film's cost. Decoders read it as any other PNG.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import numpy as np

try:
    from isal import isal_zlib as _deflate
except ImportError:  # a platform without its wheel: the same pictures, slower
    _deflate = zlib  # type: ignore[assignment]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPE = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type: grey, RGB, RGBA
_UP = 2  # PNG filter type "Up"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(pixels: np.ndarray) -> bytes:
    """An 8-bit PNG of ``pixels``: ``(rows, cols)`` grey, ``(rows, cols, 3)`` RGB or ``(..., 4)``
    RGBA, uint8."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise ValueError(f"a PNG preview takes uint8 pixels, not {pixels.dtype}")
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if pixels.ndim not in (2, 3) or channels not in _COLOUR_TYPE:
        raise ValueError(f"a PNG preview takes (rows, cols[, 3 or 4]) pixels, not {pixels.shape}")
    rows, cols = pixels.shape[:2]
    lines = pixels.reshape(rows, cols * channels)
    filtered = np.empty((rows, cols * channels + 1), np.uint8)
    filtered[:, 0] = _UP
    filtered[0, 1:] = lines[0]  # the row above the first is zeros
    np.subtract(lines[1:], lines[:-1], out=filtered[1:, 1:])  # modulo 256, as PNG defines it
    header = struct.pack(">IIBBBBB", cols, rows, 8, _COLOUR_TYPE[channels], 0, 0, 0)
    return b"".join(
        (
            _SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", _deflate.compress(filtered.tobytes(), 1)),
            _chunk(b"IEND", b""),
        )
    )


def jpeg_bytes(pixels: np.ndarray) -> bytes:
    """A JPEG (quality 90) of uint8 grey or RGB ``pixels``: a tenth of a PNG's size, lossy."""
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# --previews: the file suffix and encoder of each kind; "none" writes no picture.
PREVIEWS: dict[str, tuple[str, Callable[[np.ndarray], bytes]] | None] = {
    "png": (".png", png_bytes),
    "jpeg": (".jpg", jpeg_bytes),
    "none": None,
}
