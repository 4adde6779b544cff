"""Annotations as data: regions (a mask or a box, with the reader who drew it) matched to the
frames of an opened image by SOP Instance UID or file name. Readers of the file formats live in
:mod:`viewer.io.annotation_formats`, one module per format."""

from __future__ import annotations

import math
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


@dataclass(frozen=True)
class Crop:
    """A mask kept as its bounding box: where the box lies in the image and its pixels. Decoded
    masks are kept so, so that a file's thousands of small regions on one image cost their own
    size, not thousands of images."""

    top: int
    left: int
    pixels: np.ndarray  # bool (height, width)

    @classmethod
    def of(cls, mask: np.ndarray) -> Crop:
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        if rows.size == 0:
            return cls(0, 0, np.zeros((0, 0), bool))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        return cls(int(y0), int(x0), np.array(mask[y0:y1, x0:x1], bool))

    def paint(self, out: np.ndarray) -> None:
        """OR the mask into ``out`` (the image's ``(rows, cols)``), clipped to it."""
        h, w = self.pixels.shape
        if self.top < 0 or self.left < 0 or self.top + h > out.shape[0] or self.left + w > out.shape[1]:
            raise ValueError(f"a decoded mask reaches past the {out.shape[0]} x {out.shape[1]} image")
        out[self.top : self.top + h, self.left : self.left + w] |= self.pixels


@dataclass
class Region:
    """One annotated region on one image frame: a mask, or a box ``(x, y, w, h)`` in pixels."""

    label: str
    mask: np.ndarray | None = None
    bbox: tuple[float, float, float, float] | None = None
    sop_instance_uid: str = ""
    file: str = ""  # file name stem the region belongs to, when there is no UID
    reader: str = ""  # who drew it: a radiologist's id (VinDr-CXR rad_id), a SEG's creator, ...
    # A mask decoded for the image's size when first drawn (run lengths that carry no size; COCO
    # masks, only for an image of the size they declare): the mask, or its bounding-box crop.
    decode: Callable[[int, int], np.ndarray | Crop] | None = None
    # A region in patient space (a NIfTI label map): its mask on an image's voxel grid
    # ``(frames, rows, cols)``, or None where it does not lie on that image.
    place: Callable[[Image], np.ndarray | None] | None = None
    # What ``decode`` gave, cropped, and for which image size.
    _decoded: tuple[tuple[int, int], Crop] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def drawn(cls, label: str, mask: np.ndarray, frame: FrameInfo) -> Region:
        """A region drawn on ``frame``, addressed as an annotation file would address it (its SOP
        Instance UID, and its file name for images that have none)."""
        stem = Path(FileRef.parse(frame.source).name).stem
        return cls(label, mask=mask, sop_instance_uid=frame.sop_instance_uid, file=stem)

    def raster(self, rows: int, cols: int) -> np.ndarray:
        """The region's ``(rows, cols)`` bool mask on an image of that size."""
        if self.mask is not None:
            if self.mask.shape != (rows, cols):
                raise ValueError(f"{self.label} mask is {self.mask.shape}, the image {(rows, cols)}")
            return self.mask
        out = np.zeros((rows, cols), bool)
        self.paint(out)
        return out

    def paint(self, out: np.ndarray) -> None:
        """OR the region into ``out``, one frame's ``(rows, cols)`` mask, without a full-size copy
        of its own. A box is clipped to the image; a decoded mask must be of the image's size."""
        rows, cols = out.shape
        if self.mask is not None:
            out |= self.raster(rows, cols)
        elif self.decode is not None:
            if self._decoded is None or self._decoded[0] != (rows, cols):
                decoded = self.decode(rows, cols)
                if not isinstance(decoded, Crop):
                    if decoded.shape != (rows, cols):
                        raise ValueError(f"{self.label} mask is {decoded.shape}, the image {(rows, cols)}")
                    decoded = Crop.of(decoded)
                self._decoded = ((rows, cols), decoded)
            self._decoded[1].paint(out)
        elif self.bbox is not None:
            x0, y0, x1, y1 = _box_pixels(self.bbox, rows, cols)
            out[y0:y1, x0:x1] = True
        else:
            raise ValueError(f"{self.label} has neither a mask nor a box")


class Placement:
    """A region in patient space (a NIfTI label map, RT Structure Set contours), placed on an
    image's voxel grid once per image: ``placement(image)`` is its mask ``(frames, rows, cols)``,
    or None where it does not lie on that image. Subclasses implement ``_place``."""

    def __init__(self) -> None:
        # Keyed by the image object itself, weakly: a closed image's mask goes with it, and a new
        # image never inherits an old one's mask through a reused id(). Kept as the bounding box
        # of the mask (its corner and pixels): a label map's hundred labels on one CT cost their
        # own extent, not a hundred volumes.
        self._placed: weakref.WeakKeyDictionary[Image, tuple[tuple[int, ...], np.ndarray] | None] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self, image: Image) -> np.ndarray | None:
        if image not in self._placed:
            placed = self._place(image)
            self._placed[image] = None if placed is None else _bounding_box(placed)
        kept = self._placed[image]
        if kept is None:
            return None
        corner, pixels = kept
        out = np.zeros((image.n_frames, image.rows, image.columns), bool)
        out[tuple(slice(c, c + n) for c, n in zip(corner, pixels.shape, strict=True))] = pixels
        return out

    def _place(self, image: Image) -> np.ndarray | None:
        raise NotImplementedError


def _bounding_box(mask: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
    """The corner and the pixels of the part of ``mask`` that holds all its True values."""
    corner, parts = [], []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        lo, hi = (int(hit[0]), int(hit[-1]) + 1) if hit.size else (0, 0)
        corner.append(lo)
        parts.append(slice(lo, hi))
    return tuple(corner), np.array(mask[tuple(parts)], bool)


def _box_pixels(bbox: tuple[float, float, float, float], rows: int, cols: int) -> tuple[int, int, int, int]:
    """A box ``(x, y, w, h)`` as pixel bounds ``x0, y0, x1, y1`` clipped to the image (a box
    partly outside keeps its part inside); a ValueError for one that is not finite numbers."""
    x, y, w, h = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ValueError(f"box {bbox} is not four finite numbers")
    x0, x1 = (min(max(0, round(v)), cols) for v in (x, x + w))
    y0, y1 = (min(max(0, round(v)), rows) for v in (y, y + h))
    return x0, y0, x1, y1


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
            try:
                if region.place is not None:
                    placed = region.place(image)
                    if placed is not None:
                        out |= placed
                    continue
                index = self._frame_of(region, image)
                if index is not None:
                    region.paint(out[index])
            except AnnotationError:
                raise
            except ValueError as exc:  # a mask that does not fit this image: name the file
                raise AnnotationError(self.source, f"{region.label}: {exc}") from None
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
        Region("marker", bbox=self.marker).paint(out[0])
        out[1:] = out[0]
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
