"""Names of result folders and rows for opened series, unique within a run."""

from __future__ import annotations

import re
from pathlib import Path

from viewer.io.discovery import SeriesInfo
from viewer.io.sources import FileRef


def series_name(series: SeriesInfo) -> str:
    """A file-system-safe name for a series' results: its file's stem, or its folder's for a
    series of several files."""
    first = Path(FileRef.inner(series.paths[0]))
    stem = first.parent.name if series.n_frames > 1 and len(series.paths) > 1 else first.stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem) or "image"


def unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``, ... if it is in ``used`` (then added to it)."""
    candidate, k = name, 2
    while candidate in used:
        candidate, k = f"{name}_{k}", k + 1
    used.add(candidate)
    return candidate
