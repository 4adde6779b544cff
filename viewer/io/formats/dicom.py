"""DICOM files: sniffed by their preamble (or a raw data set's first element), read header-only,
grouped by StudyInstanceUID/SeriesInstanceUID (a series that mixes image sizes, colour models or
orientations is split into consistent parts, with a note), slices of a cross-sectional series
sorted along the slice normal (InstanceNumber when positions are missing), and decoded by
:mod:`viewer.io.formats.dicom_pixels`.

What a header declares is held to the budgets (:mod:`viewer.io.budgets`) here, from the header
alone: a file whose pixels would not fit the budget per file, and a series of more slices or
decoded bytes than a series may have, are reported as problems before anything is allocated.
"""

from __future__ import annotations

import heapq
from collections import defaultdict, deque

import numpy as np
from pydicom.uid import UID

from viewer.io.dicom_header import HeaderRecord, looks_like_dicom, read_header
from viewer.io.errors import Problem
from viewer.io.formats.dicom_pixels import DicomSeriesLoader, record_over_budget, series_over_budget
from viewer.io.image import Image
from viewer.io.series import SeriesInfo
from viewer.io.sources import FileRef

# Projection and photographic modalities: each file is its own image, never a slice of a volume.
PROJECTION_MODALITIES = {"CR", "DX", "MG", "RF", "XA", "IO", "PX", "OT", "SC", "ES", "XC", "GM", "SM", "OP"}
# Two slices closer than this (mm) along the normal are at the same position.
_SAME_POSITION_MM = 1e-3
_UNEVEN_SPACING = 0.1


class DicomReader:
    kind = "dicom"
    title = "DICOM file"
    patterns = ("*.dcm", "*.DCM", "DICOMDIR", "*")

    @staticmethod
    def sniff(head: bytes) -> int:
        # A Part 10 preamble wins over anything else it may also be (dual-format TIFF files).
        if head[128:132] == b"DICM":
            return 100
        return 10 if looks_like_dicom(head) else 0

    @staticmethod
    def read(ref: FileRef, _head: bytes) -> HeaderRecord | Problem:
        """The header (raises ``IsDicomdir`` for an index, ``LoadError`` for a broken file)."""
        record = read_header(ref)
        if not record.has_pixels:
            return Problem(str(ref), _no_pixels_reason(record))
        if record.rows <= 0 or record.columns <= 0:
            return Problem(str(ref), f"invalid image size {record.rows} x {record.columns}")
        if reason := record_over_budget(record):
            return Problem(str(ref), reason)
        return record

    @staticmethod
    def group(records: list[HeaderRecord], problems: list[Problem]) -> list[SeriesInfo]:
        out = []
        for series in group_series(records, problems):
            if reason := series_over_budget(series):
                problems.append(Problem(series.paths[0], reason))
            else:
                out.append(series)
        return out

    @staticmethod
    def load(series: SeriesInfo, *, pool=None, progress=None, cancelled=None) -> Image:
        return DicomSeriesLoader(series, pool, progress, cancelled).load()


def _no_pixels_reason(record: HeaderRecord) -> str:
    kind = UID(record.sop_class_uid).name if record.sop_class_uid else ""
    if kind and kind != record.sop_class_uid:
        return f"not an image ({kind}): no pixel data to display"
    return "no pixel data to display"


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
    stacks = _stacks_by_position(unique, where)
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


def _stacks_by_position(records: list[HeaderRecord], where: dict[int, float]) -> list[list[HeaderRecord]]:
    """Records sorted along the normal dealt into stacks: each goes to the first stack (in the
    order they were made) whose last slice lies at least ``_SAME_POSITION_MM`` below it.

    Positions only grow, so a stack that can take a slice can take every later one until it is
    given one: stacks wait in ``busy`` (by the position of their last slice) until the slices
    have moved past them, then join ``free`` (a heap of their numbers). O(n log n): 20,000
    images at one position no longer compare each with every stack."""
    stacks: list[list[HeaderRecord]] = []
    free: list[int] = []
    busy: deque[tuple[float, int]] = deque()
    for record in records:
        here = where[id(record)]
        while busy and here - busy[0][0] >= _SAME_POSITION_MM:
            heapq.heappush(free, busy.popleft()[1])
        if free:
            number = heapq.heappop(free)
            stacks[number].append(record)
        else:
            number = len(stacks)
            stacks.append([record])
        busy.append((here, number))
    return stacks
