"""Resolve the files a DICOMDIR lists (on disk or inside a ZIP archive), matching names case-insensitively
as CD-ROM file systems do."""

from __future__ import annotations

import posixpath
import warnings
import zipfile
from pathlib import Path

import pydicom

from viewer.io.errors import Problem, describe_exception
from viewer.io.sources import FileRef


def referenced_files(dicomdir: FileRef) -> tuple[list[FileRef], list[Problem]]:
    """The image files a DICOMDIR references, and a problem for each one that is missing."""
    try:
        with dicomdir.open() as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(fp, force=True)
        records = ds.DirectoryRecordSequence
    except Exception as exc:
        return [], [Problem(str(dicomdir), f"cannot read DICOMDIR: {describe_exception(exc)}")]
    file_ids = []
    for record in records:
        file_id = record.get("ReferencedFileID")
        if file_id:
            parts = [file_id] if isinstance(file_id, str) else [str(p) for p in file_id]
            file_ids.append(parts)
    if dicomdir.member is None:
        return _resolve_on_disk(Path(dicomdir.path).parent, file_ids, dicomdir)
    return _resolve_in_zip(dicomdir, file_ids)


def _resolve_on_disk(
    root: Path, file_ids: list[list[str]], dicomdir: FileRef
) -> tuple[list[FileRef], list[Problem]]:
    refs, problems = [], []
    for parts in file_ids:
        path = _find_case_insensitive(root, parts)
        if path is None:
            problems.append(Problem(str(root.joinpath(*parts)), f"listed in {dicomdir} but missing"))
        else:
            refs.append(FileRef(str(path)))
    return refs, problems


def _find_case_insensitive(root: Path, parts: list[str]) -> Path | None:
    current = root
    for part in parts:
        candidate = current / part
        if candidate.exists():
            current = candidate
            continue
        try:
            matches = [p for p in current.iterdir() if p.name.upper() == part.upper()]
        except OSError:
            return None
        if not matches:
            return None
        current = matches[0]
    return current if current.is_file() else None


def _resolve_in_zip(dicomdir: FileRef, file_ids: list[list[str]]) -> tuple[list[FileRef], list[Problem]]:
    base = posixpath.dirname(dicomdir.member or "")
    with zipfile.ZipFile(dicomdir.path) as archive:
        names = {name.upper(): name for name in archive.namelist()}
    refs, problems = [], []
    for parts in file_ids:
        wanted = posixpath.join(base, *parts)
        name = names.get(wanted.upper())
        if name is None:
            problems.append(Problem(f"{dicomdir.path}!/{wanted}", f"listed in {dicomdir} but missing"))
        else:
            refs.append(FileRef(dicomdir.path, name))
    return refs, problems
