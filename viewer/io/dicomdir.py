"""Resolve the files a DICOMDIR lists (on disk or inside a ZIP archive), matching names case-insensitively
as CD-ROM file systems do.

A DICOMDIR names files relative to its own folder (PS3.10 8.5: File IDs are components of a
path below the File-set's root). A record whose File ID leaves that folder (``..``, an absolute
path, a drive letter, a separator inside a component, or a link on disk that resolves outside
it) is refused and reported, never opened: a DICOMDIR downloaded with a study must not make
``explain`` or ``--send-to`` read another patient's study or probe ``/etc/passwd``.
"""

from __future__ import annotations

import os
import posixpath
import warnings
from pathlib import Path

import pydicom

from viewer.io.archives import open_archive
from viewer.io.errors import Problem, describe_exception
from viewer.io.sources import FileRef

# Characters that make a File ID component more than one plain name.
_NOT_IN_A_COMPONENT = ("/", "\\", ":", "\0")


def referenced_files(dicomdir: FileRef) -> tuple[list[FileRef], list[Problem]]:
    """The image files a DICOMDIR references, and a problem for each one that is missing or
    that lies outside the DICOMDIR's folder."""
    try:
        with dicomdir.open() as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(fp, force=True)
        records = ds.DirectoryRecordSequence
        file_ids = []
        for record in records:
            file_id = record.get("ReferencedFileID")
            if file_id:
                parts = [file_id] if isinstance(file_id, str) else [str(p) for p in file_id]
                file_ids.append(parts)
    except Exception as exc:
        return [], [Problem(str(dicomdir), f"cannot read DICOMDIR: {describe_exception(exc)}")]
    if dicomdir.member is None:
        return _resolve_on_disk(Path(dicomdir.path).parent, file_ids, dicomdir)
    return _resolve_in_zip(dicomdir, file_ids)


def escapes(parts: list[str]) -> bool:
    """Whether File ID ``parts`` could name anything but a file below the DICOMDIR's folder."""
    for part in parts:
        text = part.strip()
        if text in ("", ".", "..") or any(c in text for c in _NOT_IN_A_COMPONENT):
            return True
    return False


def _outside(dicomdir: FileRef, parts: list[str]) -> Problem:
    shown = "\\".join(parts)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    return Problem(str(dicomdir), f"a record refers to {shown}, outside the DICOMDIR's folder: not opened")


def _resolve_on_disk(
    root: Path, file_ids: list[list[str]], dicomdir: FileRef
) -> tuple[list[FileRef], list[Problem]]:
    refs, problems = [], []
    real_root = os.path.realpath(root)
    listings: dict[Path, dict[str, str] | None] = {}
    for parts in file_ids:
        if escapes(parts):
            problems.append(_outside(dicomdir, parts))
            continue
        try:
            path = _find_case_insensitive(root, parts, listings)
        except (OSError, ValueError):  # a name too long for the file system, an odd character
            path = None
        if path is None:
            problems.append(Problem(str(root.joinpath(*parts)), f"listed in {dicomdir} but missing"))
        elif os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
            problems.append(_outside(dicomdir, parts))  # a link inside the folder that leads out
        else:
            refs.append(FileRef(str(path)))
    return refs, problems


def _find_case_insensitive(
    root: Path, parts: list[str], listings: dict[Path, dict[str, str] | None]
) -> Path | None:
    """``root / parts`` as it exists, each component matched regardless of case. Each folder is
    listed once per DICOMDIR (a disc of 10,000 images in one folder is not listed 10,000 times)."""
    current = root
    for part in parts:
        candidate = current / part
        if candidate.exists():
            current = candidate
            continue
        if current not in listings:
            try:
                listings[current] = {}
                for entry in os.scandir(current):
                    listings[current].setdefault(entry.name.upper(), entry.name)
            except OSError:
                listings[current] = None
        names = listings[current]
        if not names or part.upper() not in names:
            return None
        current = current / names[part.upper()]
    return current if current.is_file() else None


def _resolve_in_zip(dicomdir: FileRef, file_ids: list[list[str]]) -> tuple[list[FileRef], list[Problem]]:
    base = posixpath.dirname(dicomdir.member or "")
    names = {name.upper(): name for name in open_archive(dicomdir.path).namelist()}
    refs, problems = [], []
    for parts in file_ids:
        if escapes(parts):
            problems.append(_outside(dicomdir, parts))
            continue
        wanted = posixpath.join(base, *parts)
        name = names.get(wanted.upper())
        if name is None:
            problems.append(Problem(f"{dicomdir.path}!/{wanted}", f"listed in {dicomdir} but missing"))
        else:
            refs.append(FileRef(dicomdir.path, name))
    return refs, problems
