"""The annotation files the user loaded, kept across images until unloaded, and the regions drawn
on each image. No Qt.

An annotation file such as NIH's ``BBox_List_2017.csv`` covers a whole data set: it is read once
and indexed by the SOP Instance UIDs and file names its regions name, so showing an image asks the
index for that image's regions instead of walking every region of the file. Each image gets one
:class:`Annotation` object of its own (``for_image``), holding the loaded files' regions on it and
the regions drawn on it; drawn regions stay with their image when the files are unloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from viewer.io.annotations import Annotation, Region, names_of
from viewer.io.image import Image
from viewer.io.series import SeriesInfo

DRAWN = "drawn in the viewer"


@dataclass(eq=False)
class AnnotationFile:
    """A loaded annotation file and its regions by the image names they use."""

    path: Path
    annotation: Annotation
    by_uid: dict[str, list[int]] = field(default_factory=dict)  # SOP Instance UID -> region numbers
    by_name: dict[str, list[int]] = field(default_factory=dict)  # file name stem -> region numbers
    placed: list[int] = field(default_factory=list)  # regions in patient space: placed per image

    @classmethod
    def index(cls, path: str | Path, annotation: Annotation) -> AnnotationFile:
        made = cls(Path(path), annotation)
        for n, region in enumerate(annotation.regions):
            if region.place is not None:
                made.placed.append(n)
                continue
            if region.sop_instance_uid:
                made.by_uid.setdefault(region.sop_instance_uid, []).append(n)
            if region.file:
                made.by_name.setdefault(region.file, []).append(n)
        return made

    @property
    def name(self) -> str:
        return self.path.name

    def images(self) -> int:
        """How many images the file names (by UID or file name; patient-space regions aside)."""
        return len(self.by_uid.keys() | self.by_name.keys())

    def regions_on(self, image: Image) -> list[Region]:
        """The regions that lie on ``image``, in the file's order (what ``Annotation.matches``
        tests region by region: a frame's SOP Instance UID, else a name of its file)."""
        numbers = self._named([(f.sop_instance_uid, f.source) for f in image.frames])
        regions = self.annotation.regions
        numbers |= {n for n in self.placed if regions[n].place(image) is not None}
        return [regions[n] for n in sorted(numbers)]

    def names(self, series: SeriesInfo) -> bool | None:
        """Whether the file names ``series`` (None: it may, through regions in patient space that
        only the loaded image can tell)."""
        if self._named([(getattr(r, "sop_instance_uid", ""), str(r.ref)) for r in series.records]):
            return True
        return None if self.placed else False

    def for_series(self, series: SeriesInfo) -> Annotation:
        """The file cut down to the regions that may lie on ``series``: what an evaluation of that
        one image reads, without walking the whole file."""
        numbers = self._named([(getattr(r, "sop_instance_uid", ""), str(r.ref)) for r in series.records])
        regions = self.annotation.regions
        kept = [regions[n] for n in sorted(numbers | set(self.placed))]
        return Annotation(self.annotation.source, kept, marker=self.annotation.marker)

    def _named(self, frames: list[tuple[str, str]]) -> set[int]:
        numbers: set[int] = set()
        for uid, source in frames:
            if uid:
                numbers.update(self.by_uid.get(uid, ()))
            for name in names_of(source):
                numbers.update(self.by_name.get(name, ()))
        return numbers


def image_key(image: Image) -> tuple[str, int]:
    """What tells an image from the others when it is opened again (a new ``Image`` object)."""
    first = image.frames[0] if image.frames else None
    return ((first.sop_instance_uid or first.source) if first is not None else "", image.n_frames)


class AnnotationBook:
    """The loaded annotation files and, per image, the annotation shown on it."""

    def __init__(self) -> None:
        self.files: list[AnnotationFile] = []
        self._shown: dict[tuple[str, int], Annotation] = {}  # image key -> its annotation
        self._from_files: set[int] = set()  # ids of the loaded files' regions (alive while loaded)

    def add(self, file: AnnotationFile) -> None:
        """Keep ``file`` (in place of an earlier load of the same path)."""
        self.remove(file.path)
        self.files.append(file)
        self._from_files.update(id(r) for r in file.annotation.regions)

    def remove(self, path: str | Path | None = None) -> list[AnnotationFile]:
        """Unload the file at ``path`` (every file if None); the regions drawn on each image stay."""
        gone = [f for f in self.files if path is None or f.path == Path(path)]
        if not gone:
            return []
        ids = {id(r) for f in gone for r in f.annotation.regions}
        for annotation in self._shown.values():
            annotation.regions[:] = [r for r in annotation.regions if id(r) not in ids]
        self.files = [f for f in self.files if f not in gone]
        self._from_files -= ids
        return gone

    def for_image(self, image: Image, *, create: bool = False) -> Annotation | None:
        """The annotation of ``image``: the loaded files' regions on it and the regions drawn on
        it, one object per image (drawing adds to it in place); None where there is none, unless
        ``create``."""
        key = image_key(image)
        shown = self._shown.get(key)
        drawn = [r for r in shown.regions if id(r) not in self._from_files] if shown is not None else []
        files = [(f, f.regions_on(image)) for f in self.files]
        files = [(f, regions) for f, regions in files if regions]
        if shown is None:
            if not files and not create:
                return None
            shown = self._shown[key] = Annotation(DRAWN)
        shown.regions[:] = [r for _, regions in files for r in regions] + drawn
        shown.source = ", ".join(str(f.annotation.source) for f, _ in files) or DRAWN
        shown.marker = next((f.annotation.marker for f, _ in files if f.annotation.marker), None)
        shown.notes[:] = [note for f, _ in files for note in f.annotation.notes]
        return shown if shown.regions or create or files else None

    def drawn(self) -> list[Annotation]:
        """The regions drawn in the viewer, one annotation per image they were drawn on."""
        out = []
        for annotation in self._shown.values():
            regions = [r for r in annotation.regions if id(r) not in self._from_files]
            if regions:
                out.append(Annotation(DRAWN, regions))
        return out

    def sources(self) -> list[AnnotationFile]:
        """The loaded files and the drawn regions (one indexed annotation per image drawn on):
        every annotation an evaluation of the opened images reads."""
        return self.files + [AnnotationFile.index(DRAWN, a) for a in self.drawn()]


__all__ = ["DRAWN", "AnnotationBook", "AnnotationFile", "image_key"]
