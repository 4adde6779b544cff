"""The two on-disk formats of ``torch.save``, read without running anything from the file.

- The ZIP archive of PyTorch >= 1.6: ``data.pkl`` and one uncompressed record per storage.
- The older stream (``_use_new_zipfile_serialization=False``; PyTorch 0.4-1.5 checkpoints, such as
  the CheXNet era's): header pickles, the main pickle, the list of storage keys, then each
  storage's element count and bytes.

Pickles are read as data by :class:`viewer.inference.pickle_data.Reader`. Storage bytes are read
only after the pickle declared them, each checked against its declared size and against what the
file really holds, so a file can never make more memory than it is large.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from viewer.inference.pickle_data import Global, LazyTensor, Opaque, Reader, SavedModule, Storage, refuse
from viewer.inference.safe_pickle import UnsafePickleError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_MAX_PICKLE_BYTES = 256 * 1024**2  # data.pkl of a whole ViT-H is a few MB
_KEY = re.compile(r"^[\w.-]{1,64}$")


def storage_id(pid: Any, storages: dict[str, Storage]) -> tuple[Storage | Global, int]:
    """The storage a persistent id names (created on first sight) and the view's offset; the
    older format also names each network class this way, with its source code (ignored)."""
    if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module":
        if not (isinstance(pid[1], Global) and pid[1].kind == "module"):
            raise refuse("a module record names no network class")
        return pid[1], 0
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
        raise refuse(f"the file refers to an outside object {str(pid)[:60]!r}")
    kind, key, numel = pid[1], str(pid[2]), pid[4]
    if not (isinstance(kind, Global) and kind.kind == "storage") or not _KEY.match(key):
        raise refuse("a storage record names no storage type")
    if not isinstance(numel, int) or numel < 0:
        raise refuse(f"storage {key} declares {numel!r} elements")
    storage = storages.setdefault(key, Storage(key, kind.target, numel))
    if storage.dtype != kind.target or storage.numel != numel:
        raise refuse(f"storage {key} is declared twice with different types or sizes")
    view = pid[5] if len(pid) == 6 else None
    if view is None:
        return storage, 0
    # Older files: (view key, offset, size) of a part of the root storage.
    _, offset, view_numel = view
    if not (
        isinstance(offset, int)
        and isinstance(view_numel, int)
        and 0 <= offset <= offset + view_numel <= numel
    ):
        raise refuse(f"a view of storage {key} lies outside it")
    return Storage(f"{key}+{offset}", storage.dtype, view_numel, root=storage, shift=offset), offset


def _tensor(lazy: LazyTensor) -> torch.Tensor:
    storage = lazy.storage
    base = storage.root.data if storage.root is not None else storage.data
    if base is None:
        raise refuse(f"the file has no bytes for storage {storage.key}")
    return torch.as_strided(base, lazy.size, lazy.stride, lazy.offset + storage.shift)


def _from_bytes(data: bytes | bytearray, dtype: torch.dtype, numel: int, key: str) -> torch.Tensor:
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(data) != numel * itemsize:
        raise refuse(f"storage {key} declares {numel * itemsize} bytes and the file holds {len(data)}")
    if numel == 0:
        return torch.empty(0, dtype=dtype)
    return torch.frombuffer(bytearray(data) if isinstance(data, bytes) else data, dtype=dtype)


def _resolve(value: Any, reader: Reader) -> Any:
    """``value`` with every lazy tensor replaced by its tensor (containers walked iteratively,
    each object once: a pickle can share one list a million times)."""
    tensors = {id(t): _tensor(t) for t in reader.tensors}
    seen: set[int] = set()
    todo = [value]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            for k, v in item.items():
                if isinstance(v, LazyTensor):
                    item[k] = tensors[id(v)]
                else:
                    todo.append(v)
        elif isinstance(item, list):
            for i, v in enumerate(item):
                if isinstance(v, LazyTensor):
                    item[i] = tensors[id(v)]
                else:
                    todo.append(v)
        elif isinstance(item, SavedModule):
            todo.append(item.state)
        elif isinstance(item, tuple | Opaque):
            pass  # tuples are not where a checkpoint keeps its weights
    return tensors[id(value)] if isinstance(value, LazyTensor) else value


def _read_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            raise UnsafePickleError("a ZIP file without data.pkl: not a PyTorch checkpoint")
        if any(n.endswith("/constants.pkl") or n.endswith("/code/") or "/code/" in n for n in names):
            raise UnsafePickleError(
                'a TorchScript archive, not weights: name it with network.arch = "torchscript"'
            )
        root = pickles[0][: -len("data.pkl")]
        byteorder = root + "byteorder"
        if byteorder in names and archive.read(byteorder).strip() not in (b"little", b""):
            raise UnsafePickleError("saved on a big-endian machine; re-save it on a little-endian one")
        storages: dict[str, Storage] = {}
        reader = Reader(lambda pid: storage_id(pid, storages)[0])
        result = reader.run(io.BytesIO(read_member(archive, pickles[0], _MAX_PICKLE_BYTES)))
        for storage in storages.values():
            member = f"{root}data/{storage.key}"
            if member not in names:
                raise refuse(f"storage {storage.key} has no record in the archive")
            itemsize = storage.itemsize
            if archive.getinfo(member).compress_type != zipfile.ZIP_STORED:
                raise refuse(f"storage {storage.key} is compressed; torch.save stores tensors as they are")
            raw = read_member(archive, member, storage.numel * itemsize)
            storage.data = _from_bytes(raw, storage.dtype, storage.numel, storage.key)
        return _resolve(result, reader)


def read_member(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """A member's bytes: refused when its header declares more than ``limit``, and read no
    further than it declares (a ZIP header may claim less than the member inflates to)."""
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise UnsafePickleError(f"{name} holds {info.file_size} bytes, more than the {limit} it may")
    with archive.open(info) as f:
        data = f.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise UnsafePickleError(f"{name} does not hold the {info.file_size} bytes its header declares")
    return data


def _read_legacy(path: Path) -> Any:
    size = path.stat().st_size
    with open(path, "rb") as f:
        magic = Reader(_no_persistent).run(f)
        if magic != _LEGACY_MAGIC:
            raise UnsafePickleError("not a PyTorch checkpoint (no PyTorch header)")
        version = Reader(_no_persistent).run(f)
        if version != 1001:
            raise UnsafePickleError(f"PyTorch checkpoint format {version!r} is not supported")
        info = Reader(_no_persistent).run(f)
        if isinstance(info, dict) and info.get("little_endian") is False:
            raise UnsafePickleError("saved on a big-endian machine; re-save it on a little-endian one")
        storages: dict[str, Storage] = {}
        reader = Reader(lambda pid: storage_id(pid, storages)[0])
        result = reader.run(f)
        keys = Reader(_no_persistent).run(f)
        if not isinstance(keys, list) or len(keys) != len(set(map(str, keys))):
            raise UnsafePickleError("not a checkpoint the safe loader can read (no storage list)")
        for key in map(str, keys):
            storage = storages.get(key)
            if storage is None:
                raise refuse(f"the storage list names {key}, which no tensor uses")
            itemsize = storage.itemsize
            declared = int.from_bytes(f.read(8), "little", signed=True)
            if declared != storage.numel or declared * itemsize > size - f.tell():
                raise refuse(f"storage {key} declares {declared} elements; the file has room for fewer")
            storage.data = _from_bytes(f.read(declared * itemsize), storage.dtype, declared, key)
        return _resolve(result, reader)


def _no_persistent(pid: Any) -> Any:
    raise refuse("a header pickle refers to an outside object")


def read_pickled(path: Path) -> Any:
    """The data ``torch.save`` wrote to ``path`` (a state dict, a :class:`SavedModule`, the
    wrappers around them), or :class:`UnsafePickleError` saying why it is refused."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        return _read_zip(path)
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] != b"\x80" and head[:1] not in (b"(", b"}", b"]"):
        raise UnsafePickleError("not a PyTorch checkpoint (neither a ZIP archive nor a pickle)")
    return _read_legacy(path)


__all__ = ["read_member", "read_pickled", "storage_id"]
