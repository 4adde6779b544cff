"""The decoder worker process: ``python -m viewer.io.decode_worker``.

Protocol on stdin/stdout, one message at a time, each an 8-byte little-endian length then the body:

- request: JSON ``{"path": ..., "member": ...}``
- reply: JSON header, then for a success one raw message per array (the pixels, then each VOI LUT
  table). Arrays travel as raw bytes described by dtype and shape, never pickled: the parent must
  not unpickle anything from a process that has just parsed an untrusted file.

A second kind of job fills COCO annotation polygons with pycocotools, whose C code has crashed on
hostile coordinates (see :mod:`viewer.io.annotation_formats.coco_rle`):

- request: JSON ``{"job": "coco-polygons", "rows": ..., "cols": ..., "items": [[[x, y, ...], ...], ...]}``
  (per item, the flat ``x, y`` lists of one region's polygons)
- reply: JSON ``{"polygons": [{"top", "left", "shape"} | {"error"}, ...]}``, then per filled item one
  message of its mask cut to its bounding box, bit-packed (``numpy.packbits``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import BinaryIO

import numpy as np


def write_message(stream: BinaryIO, body: bytes | memoryview) -> None:
    stream.write(len(body).to_bytes(8, "little"))
    stream.write(body)
    stream.flush()


def read_message(stream: BinaryIO) -> bytes:
    """One message; raises EOFError when the other side has gone."""
    head = _read_exact(stream, 8)
    return _read_exact(stream, int.from_bytes(head, "little"))


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    chunks, remaining = [], n
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def array_header(array: np.ndarray) -> dict:
    return {"dtype": array.dtype.str, "shape": list(array.shape)}


def array_from(header: dict, body: bytes) -> np.ndarray:
    dtype = np.dtype(header["dtype"])
    if dtype.hasobject:
        raise ValueError("object arrays are not accepted from a decoder worker")
    return np.frombuffer(body, dtype).reshape(header["shape"])


POLYGON_JOB = "coco-polygons"
_PYCOCOTOOLS_MISSING = "COCO polygons need pycocotools: pip install 'saliency-viewer[annotations]'"


def fill_polygons(request: dict) -> tuple[dict, list[bytes]]:
    """A polygon job's reply header and mask messages. The parent has checked the polygons
    (``limits.check_polygon``); what would overflow pycocotools' ``int`` coordinates, its ``uint``
    pixel indices or its outline buffers is checked again here, since this is the last step before
    its C code."""
    try:
        from pycocotools import mask as coco
    except ImportError:
        return {"error": _PYCOCOTOOLS_MISSING}, []
    rows, cols = int(request["rows"]), int(request["cols"])
    if not (0 < rows <= 65535 and 0 < cols <= 65535 and rows * cols < 2**31):
        return {"error": f"a {rows} x {cols} image is too large to fill polygons on"}, []
    reach, outline = 2 * (rows + cols), 64 * (rows + cols)
    entries: list[dict] = []
    bodies: list[bytes] = []
    for item in request["items"]:
        polygons = [np.asarray(p, np.float64).reshape(-1) for p in item]
        sound = bool(polygons) and all(
            p.size >= 6
            and p.size % 2 == 0
            and np.isfinite(p).all()
            and np.abs(p).max() <= reach
            and np.abs(np.diff(p.reshape(-1, 2), axis=0)).max(axis=1).sum() <= outline
            for p in polygons
        )
        if not sound:
            entries.append({"error": "a polygon with too few points or coordinates outside the image"})
            continue
        mask = coco.decode(coco.merge(coco.frPyObjects([p.tolist() for p in polygons], rows, cols)))
        hit_rows = np.flatnonzero(mask.any(axis=1))
        hit_cols = np.flatnonzero(mask.any(axis=0))
        if hit_rows.size == 0:
            top = left = 0
            crop = np.zeros((0, 0), bool)
        else:
            top, left = int(hit_rows[0]), int(hit_cols[0])
            crop = mask[top : hit_rows[-1] + 1, left : hit_cols[-1] + 1].astype(bool)
        entries.append({"top": top, "left": left, "shape": list(crop.shape)})
        bodies.append(np.packbits(crop).tobytes())
    return {"polygons": entries}, bodies


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """Decode requests until stdin closes."""
    from viewer.io.errors import describe_exception
    from viewer.io.pixel_decode import decode_file
    from viewer.io.sources import FileRef

    while True:
        try:
            request = json.loads(read_message(requests))
        except EOFError:
            return
        if request.get("job") == POLYGON_JOB:
            try:
                header, bodies = fill_polygons(request)
            except Exception as exc:
                header, bodies = {"error": describe_exception(exc)}, []
            write_message(replies, json.dumps(header).encode())
            for body in bodies:
                write_message(replies, body)
            continue
        try:
            decoded = decode_file(FileRef(request["path"], request.get("member")))
        except Exception as exc:
            write_message(replies, json.dumps({"error": describe_exception(exc)}).encode())
            continue
        pixels = np.ascontiguousarray(decoded.pixels)
        header = {
            "pixels": array_header(pixels),
            "photometric": decoded.photometric,
            "notes": list(decoded.notes),
            "luts": [
                {"first": lut.first_mapped, "name": lut.name, **array_header(lut.table)}
                for lut in decoded.voi_luts
            ],
        }
        write_message(replies, json.dumps(header).encode())
        write_message(replies, memoryview(pixels).cast("B"))
        for lut in decoded.voi_luts:
            write_message(replies, np.ascontiguousarray(lut.table).tobytes())


def main() -> None:
    # Keep the protocol stream private: anything a native decoder prints goes to stderr instead.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    requests = os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    serve(requests, replies)


if __name__ == "__main__":
    main()
