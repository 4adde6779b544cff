"""Write files so that nothing is ever overwritten and no half-written file is ever left."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_new(path: Path | str, write: Callable[[BinaryIO], None]) -> Path:
    """Create ``path`` with what ``write(file)`` writes. Refuses an existing path (a source file
    the user opened must never be replaced) and leaves nothing behind if ``write`` fails."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        # link() fails if the target appeared meanwhile, where rename() would replace it.
        os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return path


def write_bytes_new(path: Path | str, data: bytes) -> Path:
    return write_new(path, lambda f: f.write(data))


def replace_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``path`` whole or not at all, replacing an earlier version: only for the program's own
    outputs (a report, a summary, a picture rewritten by a resumed run), never a user's file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
