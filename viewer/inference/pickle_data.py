"""Read what ``torch.save`` wrote as *data*: nothing from the file is ever called.

A pickle is a small program: its ``REDUCE``/``NEWOBJ``/``BUILD`` instructions call whatever
callable the file names, with arguments the file chooses. An allowlist of callables is not enough
(a network class's constructor may itself load files, or allocate gigabytes from two integers),
so this module runs no pickle machine that calls anything. It walks the instructions with
:func:`pickletools.genops` (which parses and never executes) and builds plain values:

- containers, numbers and strings as themselves;
- tensors from the file's own storage records, each tensor's extent checked against the bytes
  its storage really has before any memory is taken, and views (``as_strided``) instead of
  copies, so no file can make more memory than its own size;
- a pickled network (``torch.save(model)``) as a :class:`SavedModule`: the class it names, looked
  up in an installed library but never called, and the instance's ``__dict__`` as data. Its
  weights are read from that data; the network itself is built by the viewer's own builder for
  the manifest's architecture (see :mod:`viewer.inference.checkpoint`);
- a few kinds of training metadata that checkpoints carry (``argparse.Namespace``, NumPy scalars,
  ``torch.device``) as opaque :class:`Opaque` records.

Anything else the file names is refused by name (:mod:`viewer.inference.safe_pickle` says which
classes a checkpoint may name). :mod:`viewer.inference.torch_files` reads the files around the
pickles (storages, the two on-disk formats).
"""

from __future__ import annotations

import math
import pickletools
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import torch
from torch import nn

from viewer.inference.safe_pickle import RESAVE, UnsafePickleError, resolve_global

_MAX_DIMS = 16
_MAX_MODULE_DEPTH = 64
_MAX_ENTRIES = 2_000_000  # parameters and buffers of one network
_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "ComplexDoubleStorage": torch.complex128,
    "ComplexFloatStorage": torch.complex64, "UntypedStorage": torch.uint8,
}  # fmt: skip
# Training metadata kept as opaque records: never built, never called.
_OPAQUE = {
    "argparse.Namespace", "torch.device", "numpy.dtype", "numpy.ndarray",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
}  # fmt: skip


@dataclass(eq=False)
class SavedModule:
    """A pickled ``nn.Module`` read as data: the class the file names (never called) and the
    instance's attributes as the file holds them."""

    cls: type[nn.Module]
    state: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.cls.__name__

    @property
    def training(self) -> bool:
        return bool(self.state.get("training", False))

    def children(self) -> Iterator[tuple[str, SavedModule]]:
        for name, child in _mapping(self.state.get("_modules")).items():
            if isinstance(child, SavedModule):
                yield str(name), child

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, SavedModule]]:
        """Every module under this one, depth first in saved order (as ``nn.Module`` does)."""
        stack: list[tuple[str, SavedModule, int]] = [(prefix, self, 0)]
        seen = 0
        while stack:
            name, module, depth = stack.pop()
            if depth > _MAX_MODULE_DEPTH:
                raise UnsafePickleError(f"the saved network nests more than {_MAX_MODULE_DEPTH} levels")
            seen += 1
            if seen > _MAX_ENTRIES:
                raise UnsafePickleError("the saved network has more modules than any real network")
            yield name, module
            children = list(module.children())
            for child_name, child in reversed(children):
                stack.append((f"{name}.{child_name}" if name else child_name, child, depth + 1))

    def state_dict(self) -> OrderedDict[str, torch.Tensor]:
        """Parameters and persistent buffers under their ``state_dict()`` names."""
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for name, module in self.named_modules():
            skip = module.state.get("_non_persistent_buffers_set") or set()
            for kind in ("_parameters", "_buffers"):
                for key, value in _mapping(module.state.get(kind)).items():
                    if value is None or (kind == "_buffers" and key in skip):
                        continue
                    if not isinstance(value, torch.Tensor):
                        raise UnsafePickleError(f"{name or module.name}.{key} is not a tensor")
                    out[f"{name}.{key}" if name else str(key)] = value
                    if len(out) > _MAX_ENTRIES:
                        raise UnsafePickleError("the saved network has more tensors than any real network")
        return out


@dataclass(eq=False)
class Opaque:
    """Metadata a checkpoint carries that the viewer never needs (``args``, NumPy scalars)."""

    name: str
    args: tuple = ()
    state: Any = None


@dataclass(frozen=True)
class Global:
    """A name the file refers to, and what reading it as data makes of a call to it."""

    name: str
    kind: str  # "call" (a data constructor below), "module", "opaque", "storage", "marker"
    target: Any = None


@dataclass
class Storage:
    key: str
    dtype: torch.dtype
    numel: int
    data: torch.Tensor | None = None  # 1-D, filled once the bytes are read
    root: Storage | None = None  # older files: a view of part of another storage ...
    shift: int = 0  # ... starting at this element

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize


@dataclass
class LazyTensor:
    """A tensor whose storage bytes come later in the file (the older format)."""

    storage: Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def refuse(message: str) -> UnsafePickleError:
    return UnsafePickleError(f"{message}. {RESAVE}")


class Reader:
    """One pickle, read instruction by instruction into data."""

    def __init__(self, storages: Callable[[tuple], Any], *, torchscript: bool = False):
        self.persistent = storages
        self.torchscript = torchscript
        self.tensors: list[LazyTensor] = []

    # -- names -----------------------------------------------------------------------------------
    def lookup(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        full = full.replace("__builtin__.", "builtins.")
        if full in _CALLS or (self.torchscript and full in _SCRIPT_CALLS):
            return Global(full, "call", _CALLS.get(full) or _SCRIPT_CALLS[full])
        if full == "builtins.object":
            return Global(full, "marker")  # the base class copyreg._reconstructor names
        if full in _OPAQUE or (self.torchscript and full.startswith("__torch__.")):
            return Global(full, "opaque")
        parts = full.split(".")
        # torch.FloatStorage, or torch.cuda.FloatStorage in a file saved from a GPU.
        if parts[0] == "torch" and parts[1:-1] in ([], ["cuda"]) and parts[-1] in _STORAGE_DTYPES:
            return Global(full, "storage", _STORAGE_DTYPES[parts[-1]])
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return Global(full, "module", resolve_global(full))

    # -- calls -----------------------------------------------------------------------------------
    def call(self, callee: Any, args: Any, kwargs: Any = None) -> Any:
        if not isinstance(callee, Global):
            raise refuse(f"the file calls a {type(callee).__name__}, which is not a class or function")
        if not isinstance(args, tuple) or (kwargs is not None and not isinstance(kwargs, dict)):
            raise refuse(f"the file calls {callee.name} with malformed arguments")
        if callee.kind == "call":
            if kwargs:
                raise refuse(f"the file calls {callee.name} with keyword arguments")
            try:
                return callee.target(self, *args)
            except UnsafePickleError:
                raise
            except (TypeError, ValueError, OverflowError) as exc:
                raise refuse(
                    f"the file calls {callee.name} with arguments it does not take ({exc})"
                ) from None
        if callee.kind == "opaque":
            return Opaque(callee.name, args)
        if callee.kind == "module":
            if args or kwargs:
                raise refuse(
                    f"the file calls {callee.name}(...) with arguments of its own; a saved network stores "
                    "its state, it never calls a constructor"
                )
            return SavedModule(callee.target)
        raise refuse(f"the file calls {callee.name}, which is not a constructor of data")

    def build(self, target: Any, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict | type(None)):
            state = state[0] or state[1]  # (dict state, slot state)
        if isinstance(target, SavedModule):
            if not isinstance(state, dict):
                raise refuse(f"the saved {target.name} has no attribute dictionary")
            target.state.update(state)
        elif isinstance(target, Opaque):
            target.state = state
        elif isinstance(target, OrderedDict) and isinstance(state, dict) and "_metadata" in state:
            target._metadata = state["_metadata"]  # type: ignore[attr-defined]  # state_dict() versions
        elif isinstance(target, torch.Tensor | LazyTensor):
            pass  # Python attributes of a tensor subclass: not needed
        else:
            raise refuse(f"the file sets the state of a {type(target).__name__}")

    # -- the machine -----------------------------------------------------------------------------
    def run(self, stream: BinaryIO) -> Any:
        stack: list[Any] = []
        marks: list[list[Any]] = []
        name, position = "", -1
        memo: dict[int, Any] = {}

        def pop_mark() -> list[Any]:
            nonlocal stack
            items = stack
            stack = marks.pop()
            return items

        try:
            for opcode, arg, at in pickletools.genops(stream):
                name, position = opcode.name, at
                if name in _CONSTANT_OPS:
                    stack.append(_constant(name, arg))
                elif name == "MARK":
                    marks.append(stack)
                    stack = []
                elif name == "STOP":
                    return stack.pop()
                elif name in ("PROTO", "FRAME"):
                    continue
                elif name == "POP":
                    stack.pop()
                elif name == "POP_MARK":
                    pop_mark()
                elif name == "DUP":
                    stack.append(stack[-1])
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[int(arg)] = stack[-1]
                elif name == "MEMOIZE":
                    memo[len(memo)] = stack[-1]
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    stack.append(memo[int(arg)])
                elif name == "EMPTY_LIST":
                    stack.append([])
                elif name == "EMPTY_DICT":
                    stack.append({})
                elif name == "EMPTY_TUPLE":
                    stack.append(())
                elif name == "EMPTY_SET":
                    stack.append(set())
                elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                    n = int(name[-1])
                    items, stack[-n:] = tuple(stack[-n:]), []
                    stack.append(items)
                elif name in ("TUPLE", "LIST", "DICT", "FROZENSET"):
                    items = pop_mark()  # before naming `stack`: popping the mark rebinds it
                    stack.append(_collect(name, items))
                elif name == "APPEND":
                    value = stack.pop()
                    _as(stack[-1], list, "append to").append(value)
                elif name == "APPENDS":
                    items = pop_mark()
                    _as(stack[-1], list, "append to").extend(items)
                elif name == "SETITEM":
                    value, key = stack.pop(), stack.pop()
                    _as(stack[-1], dict, "set an item of")[key] = value
                elif name == "SETITEMS":
                    items = pop_mark()
                    target = _as(stack[-1], dict, "set items of")
                    target.update(zip(items[::2], items[1::2], strict=True))
                elif name == "ADDITEMS":
                    items = pop_mark()
                    _as(stack[-1], set, "add items to").update(items)
                elif name == "GLOBAL":
                    module, _, attribute = arg.partition(" ")
                    stack.append(self.lookup(module, attribute))
                elif name == "STACK_GLOBAL":
                    attribute, module = stack.pop(), stack.pop()
                    if not (isinstance(module, str) and isinstance(attribute, str)):
                        raise refuse("the file names a global by something other than text")
                    stack.append(self.lookup(module, attribute))
                elif name == "REDUCE" or name == "NEWOBJ":
                    args = stack.pop()
                    stack[-1] = self.call(stack[-1], args)
                elif name == "NEWOBJ_EX":
                    kwargs, args = stack.pop(), stack.pop()
                    stack[-1] = self.call(stack[-1], args, kwargs)
                elif name == "BUILD":
                    state = stack.pop()
                    self.build(stack[-1], state)
                elif name in ("PERSID", "BINPERSID"):
                    pid = arg if name == "PERSID" else stack.pop()
                    stack.append(self.persistent(pid))
                else:  # INST, OBJ (protocol 0/1 instances), extension codes, out-of-band buffers
                    raise refuse(
                        f"the file uses the pickle instruction {name}, which a checkpoint does not need"
                    )
        except UnsafePickleError:
            raise
        except (IndexError, KeyError, TypeError, ValueError, AttributeError) as exc:
            where = f" at byte {position} ({name})" if position >= 0 else ""
            raise UnsafePickleError(
                f"not a checkpoint the safe loader can read (malformed pickle{where}: {exc})"
            ) from None
        raise UnsafePickleError("not a checkpoint the safe loader can read (the pickle has no end)")


_CONSTANT_OPS = {
    "NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4",
    "FLOAT", "BINFLOAT", "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE",
    "BINUNICODE", "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8",
}  # fmt: skip


def _constant(name: str, arg: Any) -> Any:
    if name == "NONE":
        return None
    if name in ("NEWTRUE", "NEWFALSE"):
        return name == "NEWTRUE"
    if name in ("STRING", "BINSTRING", "SHORT_BINSTRING") and isinstance(arg, bytes):
        return arg.decode("latin-1")  # Python 2 str, as torch's own loader reads it
    if name == "BYTEARRAY8":
        return bytearray(arg)
    return arg


def _collect(name: str, items: list[Any]) -> Any:
    if name == "TUPLE":
        return tuple(items)
    if name == "DICT":
        return dict(zip(items[::2], items[1::2], strict=True))
    return frozenset(items) if name == "FROZENSET" else items


def _as(target: Any, kind: type, what: str) -> Any:
    if type(target) is not kind and not (kind is dict and isinstance(target, OrderedDict)):
        raise refuse(f"the file tries to {what} a {type(target).__name__}")
    return target


# -- data constructors: what a call to each allowed name makes, without calling it ----------------


def _ordered_dict(_: Reader, items: Any = ()) -> OrderedDict:
    return OrderedDict(items if isinstance(items, list | tuple) else ())


def _set(_: Reader, items: Any = ()) -> set:
    return set(items if isinstance(items, list | tuple | set) else ())


def _frozenset(reader: Reader, items: Any = ()) -> frozenset:
    return frozenset(_set(reader, items))


def _encode(_: Reader, text: str, encoding: str = "latin1") -> bytes:
    # Protocol 2 writes Python 3 bytes as _codecs.encode(text, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise refuse("the file calls _codecs.encode with other than latin-1 text")
    return text.encode("latin-1")


def _rebuild_tensor(reader: Reader, storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> LazyTensor:
    """A tensor of ``storage``, refused unless every element it spans lies inside the storage."""
    if not isinstance(storage, Storage):
        raise refuse("a tensor refers to something other than a storage record")
    size, stride = tuple(size), tuple(stride)
    if not (
        isinstance(offset, int)
        and len(size) == len(stride) <= _MAX_DIMS
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (offset, *size, *stride))
    ):
        raise refuse(f"tensor geometry {size} / {stride} + {offset} is not a tensor's")
    numel = math.prod(size)
    last = offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True)) if numel else offset
    if numel > storage.numel or (numel and last >= storage.numel):
        raise refuse(
            f"a tensor of {numel} elements reaches element {last} of a storage of {storage.numel}: "
            "more than the file holds"
        )
    tensor = LazyTensor(storage, offset, size, stride)
    reader.tensors.append(tensor)
    return tensor


def _rebuild_tensor_v2(reader: Reader, storage, offset, size, stride, *_rest: Any) -> LazyTensor:
    return _rebuild_tensor(reader, storage, offset, size, stride)


def _rebuild_parameter(_: Reader, data: Any, *_rest: Any) -> Any:
    if not isinstance(data, LazyTensor):
        raise refuse("a parameter holds something other than a tensor")
    return data


def _rebuild_from_type(reader: Reader, func: Any, _new_type: Any, args: Any, _state: Any = None) -> Any:
    # Tensor subclasses (nn.Parameter) are saved as (rebuild function, type, its arguments).
    if not (isinstance(func, Global) and func.target in (_rebuild_tensor_v2, _rebuild_parameter)):
        raise refuse("a tensor subclass is rebuilt by something other than a tensor function")
    return func.target(reader, *args)


def _first(_: Reader, value: Any = None, *_rest: Any) -> Any:
    # TorchScript's typed containers: build_intlist(data) and restore_type_tag(value, type) are data.
    return value


def _size(_: Reader, dims: Any = ()) -> tuple:
    return tuple(dims)


def _reconstructor(reader: Reader, cls: Any, _base: Any = None, _state: Any = None) -> Any:
    # Protocols 0 and 1: copyreg._reconstructor(cls, object, None), then BUILD.
    return reader.call(cls, ())


_CALLS: dict[str, Callable[..., Any]] = {
    "collections.OrderedDict": _ordered_dict,
    "builtins.set": _set,
    "builtins.frozenset": _frozenset,
    "_codecs.encode": _encode,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type,
    "torch.nn.parameter.Parameter": _rebuild_parameter,
    "torch.Size": _size,
    "copyreg._reconstructor": _reconstructor,
}
_SCRIPT_CALLS: dict[str, Callable[..., Any]] = {
    f"torch.jit._pickle.{name}": _first
    for name in ("build_intlist", "build_tensorlist", "build_doublelist", "build_boollist")
} | {"torch.jit._pickle.restore_type_tag": _first}


__all__ = ["Global", "LazyTensor", "Opaque", "Reader", "SavedModule", "Storage", "refuse"]
