"""Errors the user can act on: each names the file and the reason, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """A file that was skipped, with a reason a user can read."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class LoadError(Exception):
    """A file or series could not be opened; ``str()`` is a complete, readable message."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def as_problem(self) -> Problem:
        return Problem(self.path, self.reason)


class IsDicomdir(LoadError):
    """The file is a DICOMDIR index: open the files it lists instead."""

    def __init__(self, path: str):
        super().__init__(path, "is a DICOMDIR index, not an image")


def describe_exception(exc: BaseException) -> str:
    """A one-line reason from a library exception (pydicom, Pillow, zipfile, OS)."""
    if isinstance(exc, LoadError):
        return exc.reason
    if isinstance(exc, MemoryError):
        return "not enough memory to read it (the header may claim an absurd size)"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(exc, EOFError) and not str(exc):
        return "the file ends too early"
    text = " ".join(str(exc).split())
    # pydicom lists every plugin it tried; the first line says enough.
    text = text.split(" - the dataset may be corrupted")[0]
    if not text:
        text = type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


class StudyFailed(Exception):
    """A study that could not be opened, predicted or explained; the message says why."""


def failure(exc: BaseException) -> str:
    """Why a study failed, in one line: the message of a ``StudyFailed``, else the exception's
    type and the first line of its message."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text if isinstance(exc, StudyFailed) else f"{type(exc).__name__}: {text}"
