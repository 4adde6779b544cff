"""Images already decoded in this process (a notebook's array, tensor or PIL image), as series.

The viewer opens, lists, predicts and explains series; an image handed over from a script has no
file, but making it a series of its own kind lets it take the same road as a file: the session's
"load" job, the study browser, thumbnails, the map cache (keyed by the image object, which this
reader hands back unchanged on every load, so maps computed once stay attached to it). Nothing is
read from disk, and no file ever sniffs as this format.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from viewer.io.errors import Problem
from viewer.io.image import Identity, Image, Window
from viewer.io.series import SeriesInfo
from viewer.io.sources import FileRef

KIND = "memory"


@dataclass
class MemoryRecord:
    """The one "file" of an in-memory series: the decoded image itself."""

    ref: FileRef
    image: Image
    warnings: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.image.rows

    @property
    def columns(self) -> int:
        return self.image.columns

    @property
    def frames(self) -> int:
        return self.image.n_frames

    @property
    def photometric(self) -> str:
        return self.image.photometric

    @property
    def syntax_name(self) -> str:
        return "in memory"

    @property
    def spacing(self) -> tuple[float, float]:
        return self.image.geometry.spacing

    @property
    def spacing_source(self) -> str:
        return ""

    @property
    def windows(self) -> tuple[Window, ...]:
        return tuple(self.image.windows)


class MemoryReader:
    """The reader of in-memory series: finds nothing on disk, loads what its record holds."""

    kind = KIND
    title = "image in memory"
    patterns: tuple[str, ...] = ()

    @staticmethod
    def sniff(_head: bytes) -> int:
        return 0  # never a file's format

    @staticmethod
    def read(ref: FileRef, _head: bytes) -> Problem:
        return Problem(str(ref), "images in memory are not read from files")

    @staticmethod
    def group(records: list, _problems: list[Problem]) -> list[SeriesInfo]:
        return [memory_series(r.image, r.ref.path) for r in records]

    @staticmethod
    def load(series: SeriesInfo, **_options) -> Image:
        return series.records[0].image


def memory_series(image: Image, name: str) -> SeriesInfo:
    """``image`` as a series named ``name`` (what the study browser shows: ``"array 1"``)."""
    identity = Identity(
        series_description=name,
        study_description="in memory",
        modality=image.identity.modality,
        body_part=image.identity.body_part,
    )
    return SeriesInfo(identity, KIND, records=[MemoryRecord(FileRef(name), image)])


__all__ = ["KIND", "MemoryReader", "MemoryRecord", "memory_series"]
