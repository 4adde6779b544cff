"""Find the studies and series in what the user opened, from headers only (no pixel decoding).

Each file is given to the reader of its format (``viewer.io.formats``: sniffed from its first
bytes), which reads its header and later groups the records into series. An annotation file among
them (a box CSV, a COCO or CheXlocalize JSON, a NIfTI label map: whatever an annotation format of
:mod:`viewer.io.annotation_formats` recognises) is offered as one (``Discovery.annotations``), not
listed as a file that is not an image. Anything else that cannot be read becomes a
:class:`Problem`; it never stops the other files.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

from viewer.io import formats
from viewer.io.annotation_formats import FORMATS as ANNOTATION_FORMATS
from viewer.io.dicomdir import referenced_files
from viewer.io.errors import IsDicomdir, LoadError, Problem, describe_exception
from viewer.io.series import Discovery, SeriesInfo
from viewer.io.sources import FileRef, expand_inputs

__all__ = ["Discovery", "SeriesInfo", "discover", "examine"]

Progress = Callable[[float], None]
ANNOTATION = "annotation"  # what examine() calls a file an annotation format reads
# Suffixes of the annotation files discovery offers: those that are not images themselves (PNG
# masks are images, DICOM SEG and RT Structure Sets are DICOM objects the DICOM reader names).
_ANNOTATION_SUFFIXES = (".csv", ".json", ".nii", ".nii.gz")
_SNIFF_BYTES = 4096


def discover(
    paths: Iterable[str | os.PathLike[str]],
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Discovery:
    """Examine every file under ``paths`` and group the images into series."""
    inputs = expand_inputs(paths)
    problems = list(inputs.problems)
    queue = list(inputs.files)
    known = {_identity_key(ref) for ref in queue}
    found: dict[str, list] = defaultdict(list)  # reader kind -> its records
    i = 0
    while i < len(queue):
        if cancelled is not None and cancelled():
            break
        ref = queue[i]
        i += 1
        result = examine(ref)
        if isinstance(result, IsDicomdir):
            # Open the files the index lists (those not opened already).
            listed, missing = referenced_files(ref)
            problems += missing
            if not listed and not missing:
                problems.append(Problem(str(ref), "DICOMDIR lists no files"))
            for listed_ref in listed:
                if _identity_key(listed_ref) not in known:
                    known.add(_identity_key(listed_ref))
                    queue.append(listed_ref)
        elif isinstance(result, Problem):
            problems.append(result)
        else:
            found[result[0]].append(result[1])
        if progress is not None and (i % 32 == 0 or i == len(queue)):
            progress(i / len(queue))
    series = []
    for reader in formats.READERS:  # DICOM series first, as the readers are listed
        if reader.kind in found:
            series += reader.group(found[reader.kind], problems)
    return Discovery(series, problems, i, found.get(ANNOTATION, []))


def examine(ref: FileRef) -> tuple[str, object] | Problem | IsDicomdir:
    """Classify one file and read its header: ``(reader kind, record)``, ``(ANNOTATION, path)`` for
    an annotation file, or a Problem if it is neither a readable image nor an annotation."""
    try:
        head = ref.head(132)
    except Exception as exc:
        return Problem(str(ref), f"cannot read file: {describe_exception(exc)}")
    if not head:
        return Problem(str(ref), "empty file")
    reader = formats.reader_for_head(head)
    if reader is None:
        if _is_annotation(ref):
            return ANNOTATION, ref.path
        return Problem(str(ref), "not a DICOM file or a supported image (PNG, JPEG, TIFF)")
    try:
        record = reader.read(ref, head)
    except IsDicomdir as index:
        return index
    except LoadError as exc:
        return exc.as_problem()
    return record if isinstance(record, Problem) else (reader.kind, record)


def _is_annotation(ref: FileRef) -> bool:
    """Whether an annotation format recognises the file (from its name and first bytes). Only a
    file on disk: an annotation is read from its path, never from inside an archive."""
    if ref.member is not None or not ref.path.lower().endswith(_ANNOTATION_SUFFIXES):
        return False
    try:
        head = ref.head(_SNIFF_BYTES)
    except OSError:
        return False
    path = Path(ref.path)
    for fmt in ANNOTATION_FORMATS:
        try:
            if fmt.sniff(path, head):
                return True
        except Exception:  # a sniffer that fails on odd bytes does not take the file
            continue
    return False


def _identity_key(ref: FileRef) -> tuple[str, str]:
    return (os.path.normcase(os.path.realpath(ref.path)), (ref.member or "").upper())
