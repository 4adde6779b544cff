"""Names of result folders and rows for opened series, unique within a run.

A series is named after its file (or its folder, for a series of several files), which is what
the user knows it by. With ``anonymize`` a name that is a DICOM UID, as a PACS cache names every
file (``<SOPInstanceUID>.dcm``) and folder (``<SeriesInstanceUID>/``) and many exports do, becomes
the UID the anonymised results carry in its place (:func:`anonymized_uid`): the output tree then
names nothing the original study can be found by.
"""

from __future__ import annotations

import re
from pathlib import Path

from viewer.io.dicom_writer import anonymized_uid
from viewer.io.discovery import SeriesInfo
from viewer.io.safe_text import printable
from viewer.io.sources import FileRef

# PS3.5 9.1: digits in dot-separated components, at most 64 characters.
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)+")


def series_name(series: SeriesInfo, *, anonymize: bool = False) -> str:
    """A file-system-safe name for a series' results: its file's stem, or its folder's for a
    series of several files; with ``anonymize``, a stem that is a UID replaced by its anonymised
    stand-in. Never begins with ``.`` (a hidden folder, or the run's own ``.partial``) or ``-``
    (an option to the next shell command, a formula to a spreadsheet)."""
    first = Path(FileRef.inner(series.paths[0]))
    stem = first.parent.name if series.n_frames > 1 and len(series.paths) > 1 else first.stem
    if anonymize and len(stem) <= 64 and _UID.fullmatch(stem):
        stem = anonymized_uid(stem)
    # printable first: the bytes of a name that is not UTF-8 stay told apart (\xff -> _xff).
    return re.sub(r"[^A-Za-z0-9._-]+", "_", printable(stem)).lstrip(".-") or "image"


def unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``, ... if it is in ``used`` (then added to it)."""
    candidate, k = name, 2
    while candidate in used:
        candidate, k = f"{name}_{k}", k + 1
    used.add(candidate)
    return candidate
