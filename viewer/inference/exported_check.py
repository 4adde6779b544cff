"""Check a ``torch.export`` program (``.pt2``) before any of it is loaded.

``torch.export.save`` writes a zip: ``models/<name>.json`` (the graph, as JSON), raw tensor
records ``data/weights/weight_N`` / ``data/constants/tensor_N`` described by JSON configs, and
``data/sample_inputs/<name>.pt`` (a ``torch.save`` pickle). ``torch.export.load`` would also read
pickles in several places: a weight or constant flagged ``use_pickle`` (``torch.load`` with
``weights_only=False``), ``custom_obj_*`` (TorchBind) and ``opaque_obj_*`` (``pickle.loads``)
constants, the sample inputs (``weights_only=True``, then ``False`` when that fails) and the
legacy single-file layout. It ``exec``s the program's ``guards_code`` when the module is built
and hands shape expressions to ``sympy.sympify``, which evaluates Python.

So the archive is read as data first, and is safe only when:

- every member is one of the files ``torch.export.save`` writes for a plain program (no pickled
  payloads, custom or opaque objects, AOTInductor binaries, legacy files);
- every graph node's target, in the main graph and in any nested one, is a pure tensor operator
  of :mod:`viewer.inference.graph_ops` (``torch.ops.aten.relu.default`` is ``aten::relu``);
- every shape expression is built from SymPy constructors, names and numbers only;
- every tensor's declared sizes, strides and offset fit inside its record.

:mod:`viewer.inference.exported_program` then loads only those parts, with the sample inputs
and the guards left out. Anything else is refused by name unless the user trusts the file.
"""

from __future__ import annotations

import ast
import json
import re
import zipfile
import zlib
from pathlib import Path

from viewer.inference.graph_ops import ALLOWED_OPERATORS
from viewer.inference.torch_files import read_member
from viewer.inference.torchscript_check import GraphCheck

_MAX_JSON_BYTES = 256 * 1024**2
# Files a plain program's archive holds, relative to its root folder (``<root>/``).
_FIXED = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
_MEMBER = re.compile(
    r"models/(?P<model>\w+)\.json"
    r"|data/weights/(?:\w+_weights_config\.json|weight_\d+)"
    r"|data/constants/(?:\w+_constants_config\.json|tensor_\d+)"
    r"|data/sample_inputs/\w+\.pt"
    r"|extra/[\w./-]+"  # strings the program carries, read as text and never run
)
# Python-level targets ``torch.export`` writes for pure operations on values.
_PYTHON_TARGETS = {"_operator.getitem": "aten::__getitem__"}
# SymPy constructors a serialized shape expression may call, and the assumptions it may state.
_SYMPY_CALLS = {
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Eq", "Ne",
    "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "FloorDiv", "CeilToInt", "FloorToInt", "PythonMod",
    "CleanDiv", "IntTrueDiv", "TruncToInt", "ModularIndexing", "Abs",
}  # fmt: skip
_SYMPY_NAMES = {"True", "False", "oo", "zoo", "nan", "S"}
_SYMBOL = re.compile(r"[a-z]+\d+")
_SYMPY_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.operator, ast.unaryop, ast.keyword, ast.Load)
# Element sizes by the schema's ScalarType code (torch/_export/serde/schema.py).
_ITEMSIZE = {
    1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 2, 7: 4, 8: 8, 9: 4, 10: 8, 11: 16, 12: 1, 13: 2,
    28: 2, 29: 1, 30: 1, 31: 1, 32: 1, 33: 1, 34: 4, 35: 8,
}  # fmt: skip


def operator_name(target: str) -> str:
    """``torch.ops.aten.relu_.default`` as the allowlist writes it: ``aten::relu_``."""
    if target in _PYTHON_TARGETS:
        return _PYTHON_TARGETS[target]
    parts = target.split(".")
    if len(parts) == 5 and parts[:2] == ["torch", "ops"]:
        return f"{parts[2]}::{parts[3]}"
    return target


def check_exported_program(path: Path) -> GraphCheck:
    """Read the ``.pt2`` archive at ``path`` as data and classify everything it would run."""
    report = GraphCheck(Path(path))
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            root = _root(infos)
            if root is None or f"{root}archive_format" not in {i.filename for i in infos}:
                report.unreadable = "not a torch.export archive (re-save it with torch.export.save)"
                return report
            sizes = {i.filename[len(root) :]: i.file_size for i in infos}
            if sum(sizes.values()) > Path(path).stat().st_size * 2 + (1 << 20):
                report.unreadable = "its members declare more bytes than the file holds"
                return report
            for name in sizes:
                if name not in _FIXED and not _MEMBER.fullmatch(name) and not name.endswith("/"):
                    report.refused.setdefault(_member_kind(name), name)
            models = [m["model"] for n in sizes if (m := _MEMBER.fullmatch(n)) and m["model"]]
            if not models:
                report.unreadable = "no models/*.json graph in the archive"
                return report
            for model in models:
                _check_model(archive, root, model, sizes, report)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, RecursionError) as exc:
        report.unreadable = str(exc)[:200] or type(exc).__name__
    return report


def _root(infos: list[zipfile.ZipInfo]) -> str | None:
    roots = {i.filename.partition("/")[0] for i in infos if "/" in i.filename}
    return f"{roots.pop()}/" if len(roots) == 1 else None


def _member_kind(name: str) -> str:
    if "custom_obj_" in name or "opaque_obj_" in name:
        return "a pickled custom object (" + name.rpartition("/")[2] + ")"
    if name.startswith("data/aotinductor") or name.endswith((".so", ".cpp", ".dll", ".dylib")):
        return "compiled native code (" + name + ")"
    return f"an unexpected member {name}"


def _read_json(archive: zipfile.ZipFile, name: str) -> object:
    return json.loads(read_member(archive, name, _MAX_JSON_BYTES).decode("utf-8"))


def _check_model(archive: zipfile.ZipFile, root: str, model: str, sizes: dict[str, int], report) -> None:
    program = _read_json(archive, f"{root}models/{model}.json")
    if not isinstance(program, dict):
        raise ValueError(f"models/{model}.json is not a program")
    for node in _nodes(program):
        op = operator_name(str(node["target"]))
        report.operators[op] += 1
        if op not in ALLOWED_OPERATORS:
            report.refused.setdefault(op, f"node {node.get('name', '?')}")
    if program.get("guards_code"):
        report.operators["guards_code"] += 1  # never run: the loader leaves guards out
    graph = program.get("graph_module", {}).get("graph", {})
    if graph.get("custom_obj_values"):
        report.refused.setdefault("a custom object value", f"models/{model}.json")
    for expr in _expressions(program):
        if not _plain_expression(expr):
            report.refused.setdefault(f"a shape expression that is not plain SymPy: {expr[:60]!r}", model)
    for kind, folder in (("weights", "data/weights/"), ("constants", "data/constants/")):
        config_name = f"{folder}{model}_{kind}_config.json"
        if config_name not in sizes:
            raise ValueError(f"{config_name} is missing")
        _check_payloads(_read_json(archive, root + config_name), folder, sizes, report)


def _nodes(value: object):
    """Every graph node (a dict with ``target`` and ``inputs``), nested subgraphs included."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("target"), str) and "inputs" in item:
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _expressions(program: dict) -> list[str]:
    found = list(program.get("range_constraints", {}))
    stack: list[object] = [program]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("expr_str"), str):
                found.append(item["expr_str"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _plain_expression(text: str) -> bool:
    """Whether ``text`` only calls SymPy constructors on numbers, symbol names and assumptions:
    what ``sympy.sympify`` may evaluate without running anything else."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in _SYMPY_CALLS):
                return False
            if any(k.arg is None or not isinstance(k.value, ast.Constant) for k in node.keywords):
                return False
        elif isinstance(node, ast.Name):
            if node.id not in _SYMPY_CALLS and node.id not in _SYMPY_NAMES and not _SYMBOL.fullmatch(node.id):
                return False
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, str) and not _SYMBOL.fullmatch(node.value):
                return False
            if not isinstance(node.value, str | int | float | bool):
                return False
        elif not isinstance(node, _SYMPY_NODES):
            return False
    return True


def _check_payloads(config: object, folder: str, sizes: dict[str, int], report) -> None:
    """Each tensor is a raw record, and its sizes, strides and offset fit inside the record."""
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise ValueError(f"{folder} has no payload configuration")
    for fqn, meta in entries.items():
        if not isinstance(meta, dict):
            raise ValueError(f"payload {fqn} is not described")
        record = f"{folder}{meta.get('path_name')}"
        if meta.get("use_pickle"):
            report.refused.setdefault(f"a pickled tensor ({fqn})", record)
            continue
        if record not in sizes:
            report.refused.setdefault(f"a payload outside the tensor records ({fqn})", record)
            continue
        need = _tensor_bytes(meta.get("tensor_meta"))
        if need is None or need > sizes[record]:
            raise ValueError(f"tensor {fqn} declares more data than its record {record} holds")


def _tensor_bytes(meta: object) -> int | None:
    """Bytes a strided tensor reads from its storage; None when the description is not plain."""
    if not isinstance(meta, dict) or meta.get("dtype") not in _ITEMSIZE:
        return None
    try:
        sizes = [int(s["as_int"]) for s in meta["sizes"]]
        strides = [int(s["as_int"]) for s in meta["strides"]]
        offset = int(meta["storage_offset"]["as_int"])
    except (KeyError, TypeError, ValueError):
        return None
    if len(sizes) != len(strides) or min([offset, *sizes, *strides], default=0) < 0:
        return None
    if 0 in sizes:
        return 0
    last = offset + sum((n - 1) * s for n, s in zip(sizes, strides, strict=True))
    return (last + 1) * _ITEMSIZE[meta["dtype"]]


__all__ = ["check_exported_program", "operator_name"]
