"""Check an ONNX file before it is converted: standard operators only, external data inside the
model's folder and no larger than the files that hold it.

ONNX is a graph of operators, not code, but two things in it reach outside the graph:

- operators of another domain (``com.microsoft``, a vendor's custom ops), which run whatever a
  runtime registers under that name: refused by name (onnx2torch could not convert them either);
- external data (``location`` = a file path for an initializer's bytes): a path that leaves the
  model's folder (``../../etc/passwd``, an absolute path, a symbolic link out) would read any file
  into a tensor, and an offset or length past the file's end asks for memory it does not have.

Subgraphs (``If``, ``Loop``, ``Scan`` bodies) and model-local functions are checked the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

_STANDARD_DOMAINS = ("", "ai.onnx")
_MAX_DEPTH = 32


class OnnxRefused(ValueError):
    """The ONNX file reaches outside its graph; the message names what and where."""


def check_onnx(model, folder: Path) -> None:
    """Raise :class:`OnnxRefused` unless every node of ``model`` (loaded without external data)
    is a standard ONNX operator and every external tensor lies inside ``folder``."""
    import onnx

    local = {(f.domain, f.name) for f in model.functions}
    for node in _nodes(model.graph, list(model.functions)):
        if node.domain not in _STANDARD_DOMAINS and (node.domain, node.op_type) not in local:
            raise OnnxRefused(
                f"node {node.name or node.op_type!r} is {node.domain}::{node.op_type}, not a standard ONNX "
                "operator; only the standard operator set is run"
            )
    root = folder.resolve()
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        target = (root / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(root):
            raise OnnxRefused(f"tensor {tensor.name!r} reads {location!r}, outside the model's folder")
        if not target.is_file():
            raise OnnxRefused(f"tensor {tensor.name!r} reads {location!r}, which is not a file")
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
        except ValueError:
            raise OnnxRefused(f"tensor {tensor.name!r}: offset/length are not numbers") from None
        size = target.stat().st_size
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        needed = math.prod(tensor.dims) * itemsize
        if offset < 0 or offset + max(length, needed) > size or (length >= 0 and length != needed):
            raise OnnxRefused(
                f"tensor {tensor.name!r} needs {needed} bytes at {offset} of {location!r}, which holds {size}"
            )


def _nodes(graph, functions: list, depth: int = 0) -> Iterator:
    if depth > _MAX_DEPTH:
        raise OnnxRefused(f"subgraphs nest deeper than {_MAX_DEPTH} levels")
    bodies = [graph.node] + [f.node for f in functions if depth == 0]
    for body in bodies:
        for node in body:
            yield node
            for attribute in node.attribute:
                for sub in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                    yield from _nodes(sub, [], depth + 1)


def _tensors(graph, depth: int = 0) -> Iterator:
    if depth > _MAX_DEPTH:
        raise OnnxRefused(f"subgraphs nest deeper than {_MAX_DEPTH} levels")
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for sub in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                yield from _tensors(sub, depth + 1)


__all__ = ["OnnxRefused", "check_onnx"]
