"""One reader per file format, found by sniffing a file's first bytes.

A reader is a class with ``kind`` (its series' ``SeriesInfo.kind``), ``title``, ``patterns`` (for
the open dialog), ``sniff(head) -> int`` (how sure it is that these first 132 bytes are its format:
0 = not mine; the surest reader wins), ``read(ref, head)`` (a header record, or a Problem), ``group(records,
problems)`` (records into series) and ``load(series, ...)`` (pixels). A new format is one module
here, registered with :func:`register_reader` (the built-in ones are listed in ``READERS``).
"""

from __future__ import annotations

from typing import Protocol

from viewer.io.errors import Problem
from viewer.io.formats.dicom import DicomReader
from viewer.io.formats.memory import MemoryReader
from viewer.io.formats.raster import RasterReader
from viewer.io.image import Image
from viewer.io.series import SeriesInfo
from viewer.io.sources import FileRef


class Reader(Protocol):
    kind: str
    title: str
    patterns: tuple[str, ...]

    def sniff(self, head: bytes) -> int: ...

    def read(self, ref: FileRef, head: bytes) -> object | Problem: ...

    def group(self, records: list, problems: list[Problem]) -> list[SeriesInfo]: ...

    def load(self, series: SeriesInfo, **options) -> Image: ...


READERS: tuple[Reader, ...] = (DicomReader(), RasterReader(), MemoryReader())


def register_reader(new: Reader) -> Reader:
    """Add a reader (after the built-in ones, so DICOM series are found first); returns it. A
    reader of an existing ``kind`` replaces that one."""
    global READERS
    READERS = (*(r for r in READERS if r.kind != new.kind), new)
    return new


def reader(kind: str) -> Reader:
    return next(r for r in READERS if r.kind == kind)


def reader_for_head(head: bytes) -> Reader | None:
    """The reader surest that a file starting with ``head`` is its format (None: nobody's)."""
    score, best = max(((r.sniff(head), i) for i, r in enumerate(READERS)), default=(0, -1))
    return READERS[best] if score > 0 else None


def file_patterns() -> str:
    """The open dialog's filter: every reader's patterns, then all files."""
    patterns = dict.fromkeys(p for r in READERS for p in r.patterns if p != "*")
    # ZIP archives are opened as folders (viewer.io.sources), whatever they hold.
    return f"Images ({' '.join(patterns)} *.zip *);;All files (*)"
