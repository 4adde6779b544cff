"""Annotations as data: regions (a mask or a box, with the reader who drew it) matched to the
frames of an opened image by SOP Instance UID or file name. Readers of the file formats live in
:mod:`viewer.io.annotation_formats`, one module per format."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from viewer.io.image import FrameInfo, Image
from viewer.io.label_vocabulary import LabelMatcher
from viewer.io.sources import FileRef


class AnnotationError(ValueError):
    """An annotation file that cannot be read; the message names the file and the reason."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass
class Region:
    """One annotated region on one image frame: a mask, or a box ``(x, y, w, h)`` in pixels."""

    label: str
    mask: np.ndarray | None = None
    bbox: tuple[float, float, float, float] | None = None
    sop_instance_uid: str = ""
    file: str = ""  # file name stem the region belongs to, when there is no UID
    reader: str = ""  # who drew it: a radiologist's id (VinDr-CXR rad_id), a SEG's creator, ...
    # A mask decoded for the image's size when first drawn (run lengths that carry no size).
    decode: Callable[[int, int], np.ndarray] | None = None
    # A region in patient space (a NIfTI label map): its mask on an image's voxel grid
    # ``(frames, rows, cols)``, or None where it does not lie on that image.
    place: Callable[[Image], np.ndarray | None] | None = None

    @classmethod
    def drawn(cls, label: str, mask: np.ndarray, frame: FrameInfo) -> Region:
        """A region drawn on ``frame``, addressed as an annotation file would address it (its SOP
        Instance UID, and its file name for images that have none)."""
        stem = Path(FileRef.parse(frame.source).name).stem
        return cls(label, mask=mask, sop_instance_uid=frame.sop_instance_uid, file=stem)

    def raster(self, rows: int, cols: int) -> np.ndarray:
        if self.mask is None and self.decode is not None:
            self.mask = self.decode(rows, cols)
        if self.mask is not None:
            if self.mask.shape != (rows, cols):
                raise ValueError(f"{self.label} mask is {self.mask.shape}, the image {(rows, cols)}")
            return self.mask
        out = np.zeros((rows, cols), bool)
        x0, y0, x1, y1 = (max(0, round(v)) for v in _corners(self.bbox))
        out[y0:y1, x0:x1] = True
        return out


class Placement:
    """A region in patient space (a NIfTI label map, RT Structure Set contours), placed on an
    image's voxel grid once per image: ``placement(image)`` is its mask ``(frames, rows, cols)``,
    or None where it does not lie on that image. Subclasses implement ``_place``."""

    def __init__(self) -> None:
        # Keyed by the image object itself, weakly: a closed image's mask goes with it, and a new
        # image never inherits an old one's mask through a reused id().
        self._placed: weakref.WeakKeyDictionary[Image, np.ndarray | None] = weakref.WeakKeyDictionary()

    def __call__(self, image: Image) -> np.ndarray | None:
        if image not in self._placed:
            self._placed[image] = self._place(image)
        return self._placed[image]

    def _place(self, image: Image) -> np.ndarray | None:
        raise NotImplementedError


def _corners(bbox: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x, y, w, h = bbox
    return x, y, x + w, y + h


@dataclass
class Annotation:
    source: str
    regions: list[Region] = field(default_factory=list)
    # A burned-in marker's box (x, y, w, h), when known (phantoms' shortcut variant).
    marker: tuple[int, int, int, int] | None = None
    # Lines of the file that were skipped, each with its reason; the rest loaded.
    problems: list[str] = field(default_factory=list)
    # How the file was read, where a reader had to choose (e.g. which run-length encoding).
    notes: list[str] = field(default_factory=list)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.label for r in self.regions))

    def matches(self, image: Image) -> bool:
        return any(self._lies_on(r, image) for r in self.regions)

    def mask(
        self,
        image: Image,
        label: str | None = None,
        matcher: LabelMatcher | None = None,
        *,
        reader: str | None = None,
    ) -> np.ndarray:
        """Union of the regions of ``label`` (all labels if None) on ``image``: ``(frames, rows,
        cols)`` bool, empty where nothing is annotated. With a ``matcher``, ``label`` is a model's
        label and every region whose own label stands for it counts (``Cardiomegaly``,
        ``Pleural Effusion``, ``Nodule/Mass``)."""
        out = np.zeros((image.n_frames, image.rows, image.columns), bool)
        for region in self.regions:
            if label is not None and not _counts(region.label, label, matcher):
                continue
            if reader is not None and region.reader != reader:
                continue
            if region.place is not None:
                placed = region.place(image)
                if placed is not None:
                    out |= placed
                continue
            index = self._frame_of(region, image)
            if index is not None:
                out[index] |= region.raster(image.rows, image.columns)
        return out

    def readers(self, image: Image, label: str, matcher: LabelMatcher | None = None) -> tuple[str, ...]:
        """Who annotated ``label`` on ``image`` ("" for regions without a reader)."""
        return tuple(
            dict.fromkeys(
                r.reader for r in self.regions if _counts(r.label, label, matcher) and self._lies_on(r, image)
            )
        )

    def labels_on(self, image: Image) -> tuple[str, ...]:
        """The labels of the regions that lie on ``image``."""
        return tuple(dict.fromkeys(r.label for r in self.regions if self._lies_on(r, image)))

    def marker_mask(self, image: Image) -> np.ndarray | None:
        if self.marker is None:
            return None
        out = np.zeros((image.n_frames, image.rows, image.columns), bool)
        out[:] = Region("marker", bbox=self.marker).raster(image.rows, image.columns)
        return out

    def _lies_on(self, region: Region, image: Image) -> bool:
        if region.place is not None:
            return region.place(image) is not None
        return self._frame_of(region, image) is not None

    def _frame_of(self, region: Region, image: Image) -> int | None:
        for i, frame in enumerate(image.frames):
            if region.sop_instance_uid and region.sop_instance_uid == frame.sop_instance_uid:
                return i
        if region.file:
            for i, frame in enumerate(image.frames):
                if region.file in names_of(frame.source):
                    return i
        return None


def _counts(region_label: str, label: str, matcher: LabelMatcher | None) -> bool:
    return region_label == label if matcher is None else label in matcher.match(region_label)


_IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


def stem(source: str) -> str:
    """A file's name without an image extension (DICOM names often contain dots: UIDs)."""
    name = PurePosixPath(FileRef.inner(source).replace("\\", "/")).name
    for suffix in _IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def names_of(source: str) -> tuple[str, ...]:
    """The names an annotation file may use for the image at ``source``: its stem, and its last
    two to four path parts joined by ``_`` (CheXpert ids: ``patient64541_study1_view1_frontal``)."""
    parts = PurePosixPath(FileRef.inner(source).replace("\\", "/")).parts
    if not parts:
        return ()
    last = stem(parts[-1])
    return (last, *("_".join((*parts[-k:-1], last)) for k in (2, 3, 4) if len(parts) >= k))
