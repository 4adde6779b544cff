"""What discovery found: series of images, each known from its files' headers (nothing decoded).

A series holds one record per file, of whichever format found it (a DICOM header, a raster file's
size and mode); every record answers the same questions, so a series never asks which format it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from viewer.io.errors import Problem
from viewer.io.image import Identity, Window
from viewer.io.sources import FileRef


class SeriesRecord(Protocol):
    """One file of a series, as its format's reader describes it."""

    ref: FileRef
    rows: int
    columns: int
    frames: int

    @property
    def photometric(self) -> str: ...

    @property
    def syntax_name(self) -> str: ...

    @property
    def spacing(self) -> tuple[float, float]: ...

    @property
    def spacing_source(self) -> str: ...

    @property
    def windows(self) -> tuple[Window, ...]: ...

    @property
    def warnings(self) -> list[str]: ...


@dataclass
class SeriesInfo:
    """A displayable unit found by discovery: a volume, a multi-frame object or a single image."""

    identity: Identity
    kind: str  # the reader that found it (``viewer.io.formats``): "dicom", "raster"
    records: list[SeriesRecord] = field(default_factory=list)
    is_volume: bool = False
    slice_spacing: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.records[0].rows

    @property
    def columns(self) -> int:
        return self.records[0].columns

    @property
    def n_frames(self) -> int:
        return sum(r.frames for r in self.records)

    @property
    def modality(self) -> str:
        return self.identity.modality

    @property
    def photometric(self) -> str:
        return self.records[0].photometric

    @property
    def transfer_syntax(self) -> str:
        names = sorted({r.syntax_name for r in self.records})
        return names[0] if len(names) == 1 else "mixed: " + ", ".join(names)

    @property
    def paths(self) -> list[str]:
        return [str(r.ref) for r in self.records]

    @property
    def spacing(self) -> tuple[float, float]:
        return self.records[0].spacing

    @property
    def spacing_source(self) -> str:
        return self.records[0].spacing_source

    @property
    def windows(self) -> tuple[Window, ...]:
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
    # Annotation files found beside the images (a box CSV, a COCO JSON, a NIfTI label map), by path.
    annotations: list[str] = field(default_factory=list)

    def __add__(self, more: Discovery) -> Discovery:
        """These series and problems followed by those found ``more`` (a later search)."""
        examined = self.files_examined + more.files_examined
        annotations = self.annotations + [a for a in more.annotations if a not in self.annotations]
        return Discovery(self.series + more.series, self.problems + more.problems, examined, annotations)
