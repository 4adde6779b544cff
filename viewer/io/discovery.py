"""Find the studies and series in what the user opened, from headers only (no pixel decoding).

Files are grouped by StudyInstanceUID/SeriesInstanceUID; a series that mixes image sizes, colour
models or orientations is split into consistent parts (with a note), and the slices of a
cross-sectional series are sorted along the slice normal (InstanceNumber when positions are missing).
Anything that cannot be read becomes a :class:`Problem`; it never stops the other files.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydicom.uid import UID

from viewer.io.dicom_header import HeaderRecord, looks_like_dicom, read_header
from viewer.io.dicomdir import referenced_files
from viewer.io.errors import IsDicomdir, LoadError, Problem, describe_exception
from viewer.io.image import Identity, Window
from viewer.io.raster import RasterRecord, raster_format, read_raster_header
from viewer.io.sources import FileRef, expand_inputs

# Projection and photographic modalities: each file is its own image, never a slice of a volume.
PROJECTION_MODALITIES = {"CR", "DX", "MG", "RF", "XA", "IO", "PX", "OT", "SC", "ES", "XC", "GM", "SM", "OP"}
# Two slices closer than this (mm) along the normal are at the same position.
_SAME_POSITION_MM = 1e-3
_UNEVEN_SPACING = 0.1

Progress = Callable[[float], None]


@dataclass
class SeriesInfo:
    """A displayable unit found by discovery: a volume, a multi-frame object or a single image."""

    identity: Identity
    kind: Literal["dicom", "raster"]
    records: list[HeaderRecord] = field(default_factory=list)
    raster: RasterRecord | None = None
    is_volume: bool = False
    slice_spacing: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.raster.rows if self.raster else self.records[0].rows

    @property
    def columns(self) -> int:
        return self.raster.columns if self.raster else self.records[0].columns

    @property
    def n_frames(self) -> int:
        if self.raster:
            return self.raster.frames
        return sum(r.frames for r in self.records)

    @property
    def modality(self) -> str:
        return self.identity.modality

    @property
    def photometric(self) -> str:
        if self.raster:
            return "RGB" if self.raster.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr") else "MONOCHROME2"
        return self.records[0].photometric

    @property
    def transfer_syntax(self) -> str:
        if self.raster:
            return self.raster.format
        names = sorted({r.syntax_name for r in self.records})
        return names[0] if len(names) == 1 else "mixed: " + ", ".join(names)

    @property
    def paths(self) -> list[str]:
        return [str(self.raster.ref)] if self.raster else [str(r.ref) for r in self.records]

    @property
    def spacing(self) -> tuple[float, float]:
        return (1.0, 1.0) if self.raster else self.records[0].spacing

    @property
    def spacing_source(self) -> str:
        return "none" if self.raster else self.records[0].spacing_source

    @property
    def windows(self) -> tuple[Window, ...]:
        if self.raster:
            return ()
        return self.records[len(self.records) // 2].windows

    def notes_all(self) -> list[str]:
        """Series notes plus per-file header notes (deduplicated)."""
        seen, out = set(), []
        for note in self.notes + [n for r in self.records for n in r.warnings]:
            if note not in seen:
                seen.add(note)
                out.append(note)
        return out

    def describe(self) -> str:
        ident = self.identity
        label = ident.series_description or ident.study_description or Path(self.paths[0]).name
        return f"{ident.modality or self.kind.upper()} {label}".strip()


@dataclass
class Discovery:
    series: list[SeriesInfo]
    problems: list[Problem]
    files_examined: int = 0


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
    headers: list[HeaderRecord] = []
    rasters: list[RasterRecord] = []
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
        elif isinstance(result, RasterRecord):
            rasters.append(result)
        else:
            headers.append(result)
        if progress is not None and (i % 32 == 0 or i == len(queue)):
            progress(i / len(queue))
    series = group_series(headers, problems) + [_raster_series(r) for r in rasters]
    return Discovery(series, problems, i)


def examine(ref: FileRef) -> HeaderRecord | RasterRecord | Problem | IsDicomdir:
    """Classify one file and read its header; a Problem if it is not a readable image."""
    try:
        head = ref.head(132)
    except Exception as exc:
        return Problem(str(ref), f"cannot read file: {describe_exception(exc)}")
    if not head:
        return Problem(str(ref), "empty file")
    try:
        # DICOM first: a Part 10 preamble may itself be a TIFF header (dual-format files).
        is_part10 = head[128:132] == b"DICM"
        if not is_part10 and (fmt := raster_format(head)):
            return read_raster_header(ref, fmt)
        if not looks_like_dicom(head):
            return Problem(str(ref), "not a DICOM file or a supported image (PNG, JPEG, TIFF)")
        record = read_header(ref)
    except IsDicomdir as index:
        return index
    except LoadError as exc:
        return exc.as_problem()
    if not record.has_pixels:
        return Problem(str(ref), _no_pixels_reason(record))
    if record.rows <= 0 or record.columns <= 0:
        return Problem(str(ref), f"invalid image size {record.rows} x {record.columns}")
    return record


def _no_pixels_reason(record: HeaderRecord) -> str:
    kind = UID(record.sop_class_uid).name if record.sop_class_uid else ""
    if kind and kind != record.sop_class_uid:
        return f"not an image ({kind}): no pixel data to display"
    return "no pixel data to display"


def _identity_key(ref: FileRef) -> tuple[str, str]:
    return (os.path.normcase(os.path.realpath(ref.path)), (ref.member or "").upper())


def group_series(records: list[HeaderRecord], problems: list[Problem]) -> list[SeriesInfo]:
    """Group DICOM headers into series, split inconsistent ones, sort slices."""
    groups: dict[tuple[str, str], list[HeaderRecord]] = defaultdict(list)
    for record in records:
        ident = record.identity
        # Files without UIDs cannot be grouped safely: each stands alone.
        key = (ident.study_uid, ident.series_uid) if ident.series_uid else ("", str(record.ref))
        groups[key].append(record)

    out: list[SeriesInfo] = []
    for members in groups.values():
        parts = _split_consistent(members)
        split_note = (
            [f"series split into {len(parts)} parts: images differ in size, colour or orientation"]
            if len(parts) > 1
            else []
        )
        for part in parts:
            for series in _series_from_part(part, problems):
                series.notes = split_note + series.notes
                out.append(series)
    out.sort(
        key=lambda s: (
            s.identity.patient_name,
            s.identity.study_date,
            s.identity.study_uid,
            _series_number(s),
            s.paths[0],
        )
    )
    return out


def _series_number(series: SeriesInfo) -> int:
    try:
        return int(series.identity.series_number)
    except ValueError:
        return 0


def _split_consistent(records: list[HeaderRecord]) -> list[list[HeaderRecord]]:
    parts: dict[tuple, list[HeaderRecord]] = defaultdict(list)
    for record in records:
        orientation = tuple(np.round(record.orientation, 3)) if record.orientation else None
        colour = record.samples_per_pixel > 1 or record.photometric == "PALETTE COLOR"
        parts[(record.rows, record.columns, colour, orientation)].append(record)
    return list(parts.values())


def _series_from_part(records: list[HeaderRecord], problems: list[Problem]) -> list[SeriesInfo]:
    """One stacked series, or one series per file for projection images and multi-frame objects."""
    singles: list[HeaderRecord] = []
    stackable: list[HeaderRecord] = []
    for record in records:
        single = record.frames > 1 or record.identity.modality in PROJECTION_MODALITIES
        (singles if single else stackable).append(record)
    out = [SeriesInfo(r.identity, "dicom", [r]) for r in sorted(singles, key=_instance_order)]
    if len(stackable) == 1:
        out.append(SeriesInfo(stackable[0].identity, "dicom", stackable))
    elif stackable:
        out += _stack(stackable, problems)
    return out


def _instance_order(record: HeaderRecord) -> tuple[int, str]:
    return (record.instance_number if record.instance_number is not None else 1 << 30, str(record.ref))


def _stack(records: list[HeaderRecord], problems: list[Problem]) -> list[SeriesInfo]:
    """Sort the slices of a cross-sectional series along its normal into volume(s)."""
    identity = records[len(records) // 2].identity
    if not all(r.position is not None and r.orientation is not None for r in records):
        ordered = sorted(records, key=_instance_order)
        return [
            SeriesInfo(
                identity,
                "dicom",
                ordered,
                notes=["no ImagePositionPatient: slices ordered by InstanceNumber"],
            )
        ]

    iop = np.asarray(records[0].orientation)
    normal = np.cross(iop[:3], iop[3:])
    where = {id(r): float(np.dot(r.position, normal)) for r in records}
    by_position = sorted(records, key=lambda r: (where[id(r)], _instance_order(r)))

    # The same instance twice (e.g. copies in two transfer syntaxes): keep the first.
    seen: dict[str, HeaderRecord] = {}
    unique = []
    for record in by_position:
        uid = record.sop_instance_uid
        if uid and uid in seen:
            problems.append(
                Problem(str(record.ref), f"duplicate of {seen[uid].ref} (same SOP Instance UID); skipped")
            )
            continue
        seen[uid] = record
        unique.append(record)

    # Distinct images at one position (echoes, phases, repeated acquisitions): one stack each.
    stacks: list[list[HeaderRecord]] = []
    for record in unique:
        for stack in stacks:
            if where[id(record)] - where[id(stack[-1])] >= _SAME_POSITION_MM:
                stack.append(record)
                break
        else:
            stacks.append([record])
    split_note = (
        [f"several images per slice position: split into {len(stacks)} stacks"] if len(stacks) > 1 else []
    )
    out = []
    for stack in stacks:
        notes = list(split_note)
        spacing = None
        if len(stack) > 1:
            steps = np.diff([where[id(r)] for r in stack])
            spacing = float(np.median(steps))
            if np.max(np.abs(steps - spacing)) > _UNEVEN_SPACING * spacing:
                notes.append(
                    f"uneven slice spacing ({steps.min():.2f} to {steps.max():.2f} mm): "
                    "slices may be missing or the series may be tilted"
                )
        ident = stack[len(stack) // 2].identity
        out.append(
            SeriesInfo(ident, "dicom", stack, is_volume=len(stack) > 1, slice_spacing=spacing, notes=notes)
        )
    return out


def _raster_series(record: RasterRecord) -> SeriesInfo:
    identity = Identity(
        series_description=record.ref.name,
        study_description=Path(record.ref.member or record.ref.path).parent.name,
    )
    return SeriesInfo(identity, "raster", raster=record)
