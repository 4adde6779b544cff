"""Turn what the user opened (files, folders, ZIP archives, DICOMDIRs) into a flat list of file refs.

A :class:`FileRef` names a file on disk or a member of a ZIP archive. Nothing here decodes pixels;
archives are read member by member, never extracted to disk.

Each archive is opened once (:mod:`viewer.io.archives` keeps it open): its central directory is
parsed once, not once per member, which made listing 20,000 members quadratic. A member larger
than the ZIP member budget (:mod:`viewer.io.budgets`) is never read, whatever it holds, and no
read of a member yields more than its directory entry's size (zipfile stops there).
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from viewer.io.archives import open_archive
from viewer.io.budgets import over_budget
from viewer.io.errors import LoadError, Problem, describe_exception

# Names that are never images: skipped silently rather than reported.
_IGNORED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini", "__MACOSX"}


@dataclass(frozen=True)
class FileRef:
    """A file to read: ``path`` on disk, or ``member`` inside the ZIP archive at ``path``."""

    path: str
    member: str | None = None

    def __str__(self) -> str:
        return f"{self.path}!/{self.member}" if self.member else self.path

    @classmethod
    def parse(cls, text: str) -> FileRef:
        """The inverse of ``str()``: ``"archive.zip!/member.dcm"`` names a ZIP member."""
        path, sep, member = text.partition("!/")
        # A folder may itself be named "x!" : only a real archive makes the rest a member name.
        if sep and member and is_zip(Path(path)):
            return cls(path, member)
        return cls(text)

    @staticmethod
    def inner(text: str) -> str:
        """The path a reader names the file by: the member's inside an archive, else ``text``
        (read from the text alone, without opening anything: for matching names in bulk)."""
        _, sep, member = text.partition("!/")
        return member if sep and member else text

    @property
    def name(self) -> str:
        return Path(self.member or self.path).name

    def size(self) -> int:
        """Bytes of the file, or of the member once inflated (as its directory entry says)."""
        if self.member is None:
            return os.stat(self.path).st_size
        return self._member_info().file_size

    def read_bytes(self) -> bytes:
        """The whole file; a member is read only within the ZIP member budget."""
        if self.member is None:
            return Path(self.path).read_bytes()
        with self.stream() as f:
            return f.read()

    def open(self) -> BinaryIO:
        """A seekable binary stream; the caller closes it. A member is inflated as it is read,
        never copied whole into memory first."""
        return self.stream()

    def stream(self) -> BinaryIO:
        """A seekable stream that reads (decompresses) a ZIP member only as far as it is read:
        for headers, so discovery never inflates a whole member. The caller closes it."""
        if self.member is None:
            return open(self.path, "rb")
        info = self._member_info()
        return _MemberStream(open_archive(self.path).open(info))

    def head(self, n: int) -> bytes:
        if self.member is None:
            with open(self.path, "rb") as f:
                return f.read(n)
        with self.stream() as f:
            return f.read(n)

    def _member_info(self) -> zipfile.ZipInfo:
        """The member's directory entry, refused (``LoadError``) beyond the ZIP member budget."""
        try:
            info = open_archive(self.path).getinfo(self.member or "")
        except KeyError:
            raise LoadError(str(self), "no such member in the archive") from None
        if reason := over_budget("archive member", info.file_size, "member_bytes"):
            raise LoadError(str(self), reason)
        return info


class _MemberStream(io.RawIOBase):
    """A ZIP member's stream (the archive stays open in :mod:`viewer.io.archives`)."""

    def __init__(self, member: BinaryIO) -> None:
        super().__init__()
        self._member = member

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._member.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        return self._member.read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._member.seek(offset, whence)

    def tell(self) -> int:
        return self._member.tell()

    def close(self) -> None:
        if not self.closed:
            self._member.close()
        super().close()


@dataclass
class Inputs:
    """The expanded inputs: files to examine, and what could not be read."""

    files: list[FileRef]
    problems: list[Problem]


def is_zip(path: Path) -> bool:
    try:
        return path.is_file() and zipfile.is_zipfile(path)
    except OSError:
        return False


def expand_inputs(paths: Iterable[str | os.PathLike[str]]) -> Inputs:
    """Expand files, folders (recursively) and ZIP archives into file refs, keeping the input order.

    DICOMDIR files are among them; discovery recognises them and adds the files they list.
    """
    files: list[FileRef] = []
    problems: list[Problem] = []
    seen: set[FileRef] = set()

    def add(ref: FileRef) -> None:
        if ref in seen:
            return
        seen.add(ref)
        files.append(ref)

    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            problems.append(Problem(str(path), "no such file or folder"))
        elif path.is_dir():
            for file_path in _walk(path, problems):
                _add_file(file_path, add, problems)
        else:
            _add_file(path, add, problems)
    return Inputs(files, problems)


def _add_file(path: Path, add, problems: list[Problem]) -> None:
    if is_zip(path) and path.suffix.lower() not in {".docx", ".xlsx", ".pptx"}:
        for ref in _zip_members(path, problems):
            add(ref)
    else:
        add(FileRef(str(path)))


def _walk(folder: Path, problems: list[Problem]) -> Iterator[Path]:
    def on_error(err: OSError) -> None:
        problems.append(Problem(str(err.filename or folder), describe_exception(err)))

    for root, dirnames, filenames in os.walk(folder, onerror=on_error, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_NAMES and not d.startswith("."))
        for name in sorted(filenames):
            if name in _IGNORED_NAMES or name.startswith("."):
                continue
            yield Path(root) / name


def _zip_members(path: Path, problems: list[Problem]) -> Iterator[FileRef]:
    try:
        infos = open_archive(str(path)).infolist()
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as exc:
        problems.append(Problem(str(path), f"cannot read ZIP archive: {describe_exception(exc)}"))
        return
    for info in sorted(infos, key=lambda i: i.filename):
        parts = info.filename.split("/")
        if info.is_dir() or any(p in _IGNORED_NAMES or p.startswith(".") for p in parts):
            continue
        ref = FileRef(str(path), info.filename)
        if reason := over_budget("archive member", info.file_size, "member_bytes"):
            problems.append(Problem(str(ref), reason))
            continue
        yield ref
