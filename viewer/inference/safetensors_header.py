"""Check a safetensors file's header before the safetensors library reads it.

The format is an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
shape and byte range, then the bytes. The library validates most of it, but a header with huge or
overflowing shapes, or offsets past the end of the file, surfaced as a traceback. Here every entry
is checked against the file's real size first, so a refusal names the tensor and the reason.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

# Bytes per element of each safetensors dtype.
_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
_MAX_HEADER = 100 * 1024**2  # the library's own limit
_MAX_DIMS = 16


class SafetensorsError(ValueError):
    """A safetensors header that does not describe the file; the message says which entry."""


def check_safetensors(path: Path) -> None:
    """Raise :class:`SafetensorsError` unless every tensor the header of ``path`` declares lies
    inside the file, with a known dtype and a shape whose size matches its byte range."""
    size = Path(path).stat().st_size
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        if not 0 < length <= min(_MAX_HEADER, size - 8):
            raise SafetensorsError(f"safetensors header of {length} bytes in a file of {size}")
        raw = f.read(length)
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise SafetensorsError(f"safetensors header is not JSON ({str(exc)[:80]})") from None
    if not isinstance(header, dict):
        raise SafetensorsError("safetensors header is not a table of tensors")
    data_size = size - 8 - length
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shown = str(name)[:80]
        if not isinstance(entry, dict):
            raise SafetensorsError(f"tensor {shown!r}: no dtype, shape and offsets")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in _ITEMSIZE:
            raise SafetensorsError(f"tensor {shown!r}: unknown dtype {str(dtype)[:20]!r}")
        if not (
            isinstance(shape, list)
            and len(shape) <= _MAX_DIMS
            and all(type(d) is int and 0 <= d < 2**63 for d in shape)
        ):
            raise SafetensorsError(f"tensor {shown!r}: shape {str(shape)[:60]} is not a tensor's")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data_size
        ):
            raise SafetensorsError(
                f"tensor {shown!r}: byte range {str(offsets)[:60]} lies outside the file's {data_size} bytes"
            )
        span = offsets[1] - offsets[0]
        if math.prod(shape) * _ITEMSIZE[dtype] != span:
            raise SafetensorsError(f"tensor {shown!r}: shape {shape} of {dtype} is not its {span} bytes")


__all__ = ["SafetensorsError", "check_safetensors"]
