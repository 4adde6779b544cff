"""Check every operator a TorchScript archive can run, before ``torch.jit.load`` runs any of it.

A TorchScript file is code: loading it runs the scripted ``__setstate__`` of its modules, and its
``forward`` may call any operator PyTorch has, ``aten::from_file(shared=True)`` (which creates or
overwrites a file) and ``aten::save`` among them. So the archive's code is read first, as text:
``code/**.py`` holds the serialized program in Python syntax, which :mod:`ast` parses without
running. Every call in it is one of

- a builtin operator, printed ``torch.NAME(...)`` or ``ops.NAMESPACE.NAME(...)``;
- a method or function of the archive's own classes and functions (``(self.fc).forward(x)``,
  ``__torch__.torch.nn.functional.relu``), whose code is in the archive and checked the same way;
- one of TorchScript's own builtins (``annotate``, ``range``, ``len``, ...).

An operator is allowed only if :mod:`viewer.inference.graph_ops` lists it as a pure tensor
operator; anything else, and anything the check cannot classify, is refused by name unless the
user trusts the file (:mod:`viewer.inference.trust`). Tensors in ``data.pkl`` and
``constants.pkl`` are read as data first, so their declared sizes are checked against the file.
"""

from __future__ import annotations

import ast
import io
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from viewer.inference.graph_ops import ALLOWED_OPERATORS, SCRIPT_BUILTINS
from viewer.inference.pickle_data import Reader, Storage, refuse
from viewer.inference.torch_files import read_member, storage_id

_MAX_CODE_BYTES = 64 * 1024**2
_MAX_PICKLE_BYTES = 256 * 1024**2


@dataclass
class GraphCheck:
    """What a graph file runs: every operator with its count, and those not on the allowlist
    (each with the first place it is called)."""

    path: Path
    operators: Counter[str] = field(default_factory=Counter)
    refused: dict[str, str] = field(default_factory=dict)  # operator -> "file:line"
    unreadable: str | None = None  # why the archive could not be checked at all

    @property
    def safe(self) -> bool:
        return self.unreadable is None and not self.refused

    def reason(self) -> str:
        """One line: what in the file is not a pure tensor operator."""
        if self.unreadable is not None:
            return f"cannot check its code ({self.unreadable})"
        shown = ", ".join(f"{op} ({where})" for op, where in list(self.refused.items())[:6])
        more = f" and {len(self.refused) - 6} more" if len(self.refused) > 6 else ""
        return f"runs operators that are not pure tensor operators: {shown}{more}"


def check_torchscript(path: Path) -> GraphCheck:
    """Read the TorchScript archive at ``path`` and classify every call in its code."""
    report = GraphCheck(Path(path))
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            code = [i for i in infos if "/code/" in f"/{i.filename}" and i.filename.endswith(".py")]
            if not code:
                report.unreadable = "no code/ folder: not a TorchScript archive"
                return report
            if sum(i.file_size for i in code) > _MAX_CODE_BYTES:
                report.unreadable = "more code than any network has"
                return report
            sources = {i.filename: read_member(archive, i.filename, _MAX_CODE_BYTES) for i in code}
            for info in infos:
                if info.filename.rpartition("/")[2] in ("data.pkl", "constants.pkl"):
                    _check_tensors(archive, info, infos)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError) as exc:
        report.unreadable = str(exc).split(". Re-save")[0][:200] or type(exc).__name__
        return report
    methods, functions = _definitions(sources, report)
    for name, text in sources.items():
        if report.unreadable is None:
            _Calls(report, name, methods, functions).visit(_parse(text, name, report))
    return report


def _check_tensors(archive: zipfile.ZipFile, info: zipfile.ZipInfo, infos: list[zipfile.ZipInfo]) -> None:
    """Every tensor the pickle declares must fit the storage record the archive holds for it."""
    sizes = {i.filename: i.file_size for i in infos}
    folder = info.filename[: -len(".pkl")]  # data.pkl's records are in data/, constants.pkl's in constants/
    storages: dict[str, Storage] = {}
    reader = Reader(lambda pid: storage_id(pid, storages)[0], torchscript=True)
    reader.run(io.BytesIO(read_member(archive, info.filename, _MAX_PICKLE_BYTES)))
    for storage in storages.values():
        if sizes.get(f"{folder}/{storage.key}") != storage.numel * storage.itemsize:
            raise refuse(f"storage {storage.key} declares {storage.numel} elements; its record differs")


def _parse(text: bytes, name: str, report: GraphCheck) -> ast.AST:
    try:
        return ast.parse(text.decode("utf-8"), filename=name)
    except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError, MemoryError) as exc:
        report.unreadable = f"{name} is not TorchScript code ({type(exc).__name__})"
        return ast.Module(body=[], type_ignores=[])


def _definitions(sources: dict[str, bytes], report: GraphCheck) -> tuple[set[str], set[str]]:
    """Names of the methods of the archive's classes, and of its free functions."""
    methods: set[str] = set()
    functions: set[str] = set()
    for name, text in sources.items():
        tree = _parse(text, name, report)
        for node in getattr(tree, "body", []):
            if isinstance(node, ast.ClassDef):
                methods.update(n.name for n in node.body if isinstance(n, ast.FunctionDef))
            elif isinstance(node, ast.FunctionDef):
                functions.add(node.name)
    return methods, functions


def _dotted(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None for anything but names and attributes."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


class _Calls(ast.NodeVisitor):
    """Classifies each call and each reference to ``torch.*`` / ``ops.*`` in one code file."""

    def __init__(self, report: GraphCheck, file: str, methods: set[str], functions: set[str]):
        self.report, self.file = report, file.rpartition("/code/")[2] or file
        self.methods, self.functions = methods, functions
        self.local: set[str] = set()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        saved = self.local
        self.local = {a.arg for a in (*node.args.args, *node.args.kwonlyargs)}
        bound = (n for n in ast.walk(node) if isinstance(n, ast.Assign | ast.For))
        self.local |= {t.id for n in bound for t in _targets(n)}
        # Annotations name types (Tensor, __torch__.Cls, Optional[...]): not calls.
        for item in (*node.body, *node.decorator_list):
            self.visit(item)
        for default in (*node.args.defaults, *node.args.kw_defaults):
            if default is not None:
                self.visit(default)
        self.local = saved

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:  # class attribute declarations: the annotation is a type
            self.visit(node.value)

    def visit_Call(self, node: ast.Call) -> None:
        self._callee(node.func, node.lineno)
        for arg in (*node.args, *(k.value for k in node.keywords)):
            self.visit(arg)
        if isinstance(node.func, ast.Attribute):
            self._receiver(node.func.value)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        parts = _dotted(node)
        if parts is not None and parts[0] in ("torch", "ops"):
            self._operator(parts, node.lineno)  # a builtin named without a call is still refused
            return
        self.generic_visit(node)

    def _receiver(self, node: ast.AST) -> None:
        parts = _dotted(node)
        if parts is None or parts[0] not in ("torch", "ops"):
            self.visit(node)

    def _callee(self, func: ast.AST, line: int) -> None:
        parts = _dotted(func)
        if parts is not None and parts[0] in ("torch", "ops"):
            self._operator(parts, line)
        elif parts is not None and parts[0] == "__torch__":
            if parts[1:3] == ["torch", "classes"]:
                self._refuse("torch.classes." + ".".join(parts[3:]), line)  # native custom classes
        elif parts is not None and len(parts) == 1:
            name = parts[0]
            if name not in SCRIPT_BUILTINS and name not in self.local and name not in self.functions:
                self._refuse(f"{name}()", line)
        elif isinstance(func, ast.Attribute):
            if func.attr not in self.methods:  # a method of no class in the archive
                self._refuse(f"method {func.attr}()", line)
        else:
            self._refuse(f"a call of {type(func).__name__}", line)

    def _operator(self, parts: list[str], line: int) -> None:
        if parts[0] == "torch" and len(parts) == 2:
            op = f"aten::{parts[1]}"
        elif parts[0] == "ops" and len(parts) == 3:
            op = f"{parts[1]}::{parts[2]}"
        else:
            op = ".".join(parts)
        self.report.operators[op] += 1
        if op not in ALLOWED_OPERATORS:
            self._refuse(op, line)

    def _refuse(self, what: str, line: int) -> None:
        self.report.refused.setdefault(what, f"{self.file}:{line}")


def _targets(node: ast.Assign | ast.For) -> list[ast.Name]:
    found = node.targets if isinstance(node, ast.Assign) else [node.target]
    return [n for t in found for n in ast.walk(t) if isinstance(n, ast.Name)]


__all__ = ["GraphCheck", "check_torchscript"]
