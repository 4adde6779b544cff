"""The decoder worker process: ``python -m viewer.io.decode_worker``.

Protocol on stdin/stdout, one message at a time, each an 8-byte little-endian length then the body:

- request: JSON ``{"path": ..., "member": ...}``
- reply: JSON header, then for a success one raw message per array (the pixels, then each VOI LUT
  table). Arrays travel as raw bytes described by dtype and shape, never pickled: the parent must
  not unpickle anything from a process that has just parsed an untrusted file.
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
