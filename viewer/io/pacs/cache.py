"""The local cache of retrieved studies: one file per instance, addressed by its UIDs.

    <root>/<server key>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm
    <root>/<server key>/<StudyInstanceUID>/<SeriesInstanceUID>/.series.json   (state, see below)

A SOP Instance UID names one content, so an instance received twice lands on the same name and is
never duplicated; each is written atomically, so an interrupted retrieval leaves whole instances
and a series marked incomplete, which the next retrieval resumes with only the missing ones. The
server key is a hash of the server's address, not the node's name: renaming a node keeps its cache.
Least recently used complete series are evicted once the cache passes its size cap; a series being
retrieved or opened is never evicted. Nothing is ever written to the PACS from here.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import pydicom

from viewer.io.atomic import replace_bytes
from viewer.io.pacs.nodes import PacsNode

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_STATE = ".series.json"


def check_uid(uid: str, what: str = "UID") -> str:
    """``uid`` if it is a DICOM UID (digits and dots, at most 64): it becomes a folder name, so a
    server answering ``../..`` must not choose where files go."""
    if not (isinstance(uid, str) and 0 < len(uid) <= 64 and _UID.fullmatch(uid)):
        raise ValueError(f"{what} {str(uid)[:80]!r} is not a DICOM UID (digits and dots, at most 64)")
    return uid


def check_whole(ds: pydicom.Dataset) -> None:
    """Raise ``ValueError`` if the pixel data stops short: the last part of a multipart answer cut
    off mid-transfer still parses as a dataset, with its pixel data truncated."""
    if "PixelData" not in ds:
        return
    data = ds.PixelData
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    uid = ds.get("SOPInstanceUID", "?")
    if not ds.file_meta.TransferSyntaxUID.is_encapsulated:
        bits = (
            int(ds.Rows)
            * int(ds.Columns)
            * int(ds.get("SamplesPerPixel", 1))
            * frames
            * int(ds.BitsAllocated)
        )
        if len(data) < (bits + 7) // 8:
            raise ValueError(f"instance {uid}: pixel data cut short ({len(data)} of {(bits + 7) // 8} bytes)")
        return
    # Items (FFFE,E000) with their lengths: the basic offset table, then at least one per frame.
    offset, items = 0, 0
    while offset + 8 <= len(data):
        tag, length = data[offset : offset + 4], int.from_bytes(data[offset + 4 : offset + 8], "little")
        if tag != b"\xfe\xff\x00\xe0":
            break
        offset += 8 + length
        items += 1
    if offset > len(data) or items < 1 + frames:
        raise ValueError(f"instance {uid}: encapsulated pixel data cut short")


@dataclass(frozen=True)
class SeriesState:
    """What the cache knows of one series: how many instances the server listed, and whether all
    of them have arrived."""

    expected: int
    complete: bool
    node: str
    address: str


class StudyCache:
    """Retrieved instances on disk, capped at ``max_bytes``."""

    def __init__(self, root: Path, max_bytes: int):
        self.root = Path(root)
        self.max_bytes = int(max_bytes)

    def series_folder(self, node: PacsNode, study_uid: str, series_uid: str) -> Path:
        key = hashlib.sha256(node.address().encode()).hexdigest()[:16]
        return (
            self.root
            / key
            / check_uid(study_uid, "Study Instance UID")
            / check_uid(series_uid, "Series Instance UID")
        )

    @staticmethod
    def instances(folder: Path) -> set[str]:
        """The SOP Instance UIDs already in ``folder``."""
        if not folder.is_dir():
            return set()
        return {p.name[:-4] for p in folder.iterdir() if p.suffix == ".dcm" and not p.name.startswith(".")}

    def put(self, folder: Path, data: bytes) -> str:
        """Store one received Part-10 instance in ``folder``; its SOP Instance UID, read from the
        data. Refuses an instance of another series (a server sending what was not asked for)."""
        ds = pydicom.dcmread(io.BytesIO(data))
        sop_uid = check_uid(str(ds.get("SOPInstanceUID", "")), "SOP Instance UID")
        series_uid = str(ds.get("SeriesInstanceUID", ""))
        if series_uid != folder.name:
            raise ValueError(f"instance {sop_uid} belongs to series {series_uid}, not {folder.name}")
        check_whole(ds)
        replace_bytes(folder / f"{sop_uid}.dcm", data)
        return sop_uid

    @staticmethod
    def state(folder: Path) -> SeriesState | None:
        try:
            data = json.loads((folder / _STATE).read_text(encoding="utf-8"))
            return SeriesState(
                int(data["expected"]), bool(data["complete"]), str(data["node"]), str(data["address"])
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @staticmethod
    def mark(folder: Path, node: PacsNode, expected: int, complete: bool) -> None:
        state = {"expected": expected, "complete": complete, "node": node.name, "address": node.address()}
        replace_bytes(folder / _STATE, json.dumps(state).encode())

    @staticmethod
    def touch(folder: Path) -> None:
        """Mark ``folder`` as just used (eviction goes by this time)."""
        with contextlib.suppress(OSError):
            os.utime(folder / _STATE)

    def evict(self, keep: Collection[Path] = ()) -> list[Path]:
        """Remove least recently used complete series until the cache fits its cap; ``keep``
        (series being retrieved or shown) stay. The series removed."""
        if not self.root.is_dir():
            return []
        kept = {Path(k).resolve() for k in keep}
        series: list[tuple[float, int, Path]] = []
        total = 0
        for marker in self.root.glob(f"*/*/*/{_STATE}"):
            folder = marker.parent
            size = sum(p.stat().st_size for p in folder.glob("*.dcm"))
            total += size
            state = self.state(folder)
            if state and state.complete and folder.resolve() not in kept:
                series.append((marker.stat().st_mtime, size, folder))
        removed = []
        for _, size, folder in sorted(series):
            if total <= self.max_bytes:
                break
            shutil.rmtree(folder, ignore_errors=True)
            total -= size
            removed.append(folder)
            study = folder.parent
            if study.is_dir() and not any(study.iterdir()):
                study.rmdir()
        return removed
