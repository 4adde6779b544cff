"""Write files so that nothing is ever overwritten and no half-written file is ever left."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _staged(path: Path, write: Callable[[BinaryIO], None], commit: Callable[[str, Path], None]) -> Path:
    """Write into a temporary file beside ``path``, sync it, give it the mode a plain ``open``
    would (``mkstemp``'s 0600 would hide results from a shared cluster's other users), then
    ``commit(temporary, path)``; nothing is left behind if either step fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), _MODE)
        commit(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _plain_mode() -> int:
    # Read once, at import: os.umask() can only be read by setting it, which races other threads.
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _plain_mode()


def _link(tmp: str, path: Path) -> None:
    # link() fails if the target appeared meanwhile, where rename() would replace it.
    os.link(tmp, path)


def write_new(path: Path | str, write: Callable[[BinaryIO], None]) -> Path:
    """Create ``path`` with what ``write(file)`` writes. Refuses an existing path (a source file
    the user opened must never be replaced) and leaves nothing behind if ``write`` fails."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; refusing to overwrite it")
    return _staged(path, write, _link)


def write_bytes_new(path: Path | str, data: bytes) -> Path:
    return write_new(path, lambda f: f.write(data))


def replace(path: Path | str, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` whole or not at all, replacing an earlier version: only for the program's own
    outputs (a report, a summary, a results table a resumed run reorders), never a user's file."""
    return _staged(Path(path), write, os.replace)


def replace_bytes(path: Path | str, data: bytes) -> Path:
    return replace(path, lambda f: f.write(data))
