"""List the studies and series found in files, folders, ZIP archives and DICOMDIRs, and every
file that was skipped with the reason. Reads headers only; pixel data is not decoded.

Header text and file names are the files' own: both forms show them through
``viewer.io.safe_text.printable`` (control characters as ``\\x1b``, a file name's bytes that are
not UTF-8 as ``\\xff``), so the JSON is valid UTF-8 and the text cannot drive the terminal."""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from viewer.io import Discovery, SeriesInfo, discover
from viewer.io.safe_text import printable
from viewer.resources import resources_root

HELP = "list the studies and series in PATHs (files, folders, ZIP, DICOMDIR)"


def sample_studies() -> Path:
    """The bundled sample images (their ground truth sits beside them, in annotations/)."""
    return resources_root() / "samples" / "dicom"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="files, folders, ZIP archives, DICOMDIRs or study URLs on a PACS (default: the bundled samples)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")


def run(args: argparse.Namespace) -> int:
    from viewer.cli.arguments import input_paths

    inputs = input_paths(args.paths or [str(sample_studies())])
    if inputs is None:
        return 2
    found = discover(inputs[0])
    if args.json:
        json.dump(to_json(found), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(to_text(found))
    return 0 if found.series else 1


def series_json(series: SeriesInfo) -> dict:
    ident = series.identity
    window = series.windows[0] if series.windows else None
    entry: dict = {
        "kind": series.kind,
        "modality": ident.modality,
        "study_uid": ident.study_uid,
        "series_uid": ident.series_uid,
        "study_description": ident.study_description,
        "series_description": ident.series_description,
        "rows": series.rows,
        "columns": series.columns,
        "photometric": series.photometric,
        "transfer_syntax": series.transfer_syntax,
        "spacing": list(series.spacing),
        "spacing_source": series.spacing_source,
        "window": {"center": window.center, "width": window.width, "function": window.function}
        if window
        else None,
        "notes": series.notes_all(),
    }
    if series.is_volume or len(series.records) > 1:
        entry["slices"] = len(series.records)
        entry["slice_spacing"] = series.slice_spacing
        entry["paths"] = series.paths
    else:
        entry["frames"] = series.n_frames
        entry["path"] = series.paths[0]
    return entry


def to_json(found: Discovery) -> dict:
    return _printable(
        {
            "series": [series_json(s) for s in found.series],
            "skipped": [{"path": p.path, "reason": p.reason} for p in found.problems],
        }
    )


def _printable(value):
    """Every string in a JSON document made printable (numbers and structure as they are)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {key: _printable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_printable(item) for item in value]
    return value


def to_text(found: Discovery) -> str:
    lines: list[str] = []
    studies: dict[str, list[SeriesInfo]] = defaultdict(list)
    for series in found.series:
        studies[series.identity.study_uid or series.paths[0]].append(series)
    for members in studies.values():
        ident = members[0].identity
        title = " | ".join(
            printable(part)
            for part in (ident.patient_name, ident.patient_id, ident.study_date, ident.study_description)
            if part
        )
        lines.append(f"Study: {title or '(no study information)'}")
        for series in members:
            lines.append("  " + _series_line(series))
            lines += [f"      note: {printable(note)}" for note in series.notes_all()]
    if found.problems:
        lines.append(f"Skipped {len(found.problems)} file(s):")
        lines += [f"  {printable(p.path)}: {printable(p.reason)}" for p in found.problems]
    lines.append(
        f"{len(found.series)} series from {found.files_examined} file(s); {len(found.problems)} skipped"
    )
    return "\n".join(lines) + "\n"


def _series_line(series: SeriesInfo) -> str:
    count = f"{len(series.records)} slices" if series.is_volume else f"{series.n_frames} frame(s)"
    row_mm, col_mm = series.spacing
    spacing = (
        f"{row_mm:g} x {col_mm:g} mm ({series.spacing_source})"
        if series.spacing_source != "none"
        else "no spacing"
    )
    if series.is_volume and series.slice_spacing:
        spacing += f", slices {series.slice_spacing:g} mm apart"
    window = f"window {series.windows[0].label()}" if series.windows else "no window in file"
    source = (
        series.paths[0]
        if len(series.paths) == 1
        else f"{Path(series.paths[0]).parent} ({len(series.paths)} files)"
    )
    return printable(
        f"{series.describe()}: {series.rows} x {series.columns}, {count}, {series.photometric}, "
        f"{series.transfer_syntax}, {spacing}, {window} - {source}"
    )
