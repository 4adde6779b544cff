"""Radiologists' annotations (and phantom ground truth) as masks matched to opened images.

Read from: the JSON the phantom tool writes, DICOM Segmentation objects (highdicom), bounding-box
CSV files as published with public datasets (NIH ChestX-ray14 ``Image Index, Finding Label, Bbox
[x, y, w, h]``; RSNA pneumonia ``patientId, x, y, width, height``), and PNG masks. Regions match
image frames by SOP Instance UID, else by file name (without extension).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image as PILImage

from viewer.io.image import Image


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

    def raster(self, rows: int, cols: int) -> np.ndarray:
        if self.mask is not None:
            if self.mask.shape != (rows, cols):
                raise ValueError(f"{self.label} mask is {self.mask.shape}, the image {(rows, cols)}")
            return self.mask
        out = np.zeros((rows, cols), bool)
        x0, y0, x1, y1 = (max(0, round(v)) for v in _corners(self.bbox))
        out[y0:y1, x0:x1] = True
        return out


def _corners(bbox: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x, y, w, h = bbox
    return x, y, x + w, y + h


@dataclass
class Annotation:
    source: str
    regions: list[Region] = field(default_factory=list)
    # A burned-in marker's box (x, y, w, h), when known (phantoms' shortcut variant).
    marker: tuple[int, int, int, int] | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.label for r in self.regions))

    def matches(self, image: Image) -> bool:
        return any(self._frame_of(r, image) is not None for r in self.regions)

    def mask(self, image: Image, label: str | None = None) -> np.ndarray:
        """Union of the regions of ``label`` (all labels if None) on ``image``: ``(frames, rows,
        cols)`` bool, empty where nothing is annotated."""
        out = np.zeros((image.n_frames, image.rows, image.columns), bool)
        for region in self.regions:
            if label is not None and region.label != label:
                continue
            index = self._frame_of(region, image)
            if index is not None:
                out[index] |= region.raster(image.rows, image.columns)
        return out

    def marker_mask(self, image: Image) -> np.ndarray | None:
        if self.marker is None:
            return None
        out = np.zeros((image.n_frames, image.rows, image.columns), bool)
        out[:] = Region("marker", bbox=self.marker).raster(image.rows, image.columns)
        return out

    def _frame_of(self, region: Region, image: Image) -> int | None:
        for i, frame in enumerate(image.frames):
            if region.sop_instance_uid and region.sop_instance_uid == frame.sop_instance_uid:
                return i
        if region.file:
            for i, frame in enumerate(image.frames):
                if _stem(frame.source) == region.file:
                    return i
        return None


_IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


def _stem(source: str) -> str:
    """A file's name without an image extension (DICOM names often contain dots: UIDs)."""
    name = PurePosixPath(source.replace("\\", "/").split("!/")[-1]).name
    for suffix in _IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def load_annotation(path: Path | str) -> Annotation:
    """Read an annotation file of any supported kind."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, "no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            return _read_phantom_json(path)
        if suffix == ".csv":
            return _read_box_csv(path)
        if suffix == ".png":
            return _read_png_mask(path)
        return _read_seg(path)
    except AnnotationError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AnnotationError(path, f"cannot read ({type(exc).__name__}: {exc})") from None


def _read_phantom_json(path: Path) -> Annotation:
    record = json.loads(path.read_text())
    if not str(record.get("format", "")).startswith("saliency-viewer-ground-truth/"):
        raise AnnotationError(path, "not a saliency-viewer ground-truth file (no 'format' key)")
    root = path.parent.parent  # masks are named relative to the set's folder
    regions = []
    for finding in record["findings"]:
        for s in finding["slices"]:
            mask = np.asarray(PILImage.open(root / s["mask"])) > 0
            regions.append(Region(finding["label"], mask=mask, sop_instance_uid=s["sop_instance_uid"]))
    marker = record.get("marker")
    return Annotation(str(path), regions, tuple(marker["bbox"]) if marker else None)


def _read_seg(path: Path) -> Annotation:
    import highdicom as hd
    import pydicom

    dataset = pydicom.dcmread(path)
    if getattr(dataset, "Modality", "") != "SEG":
        raise AnnotationError(
            path, f"not a DICOM Segmentation (Modality {getattr(dataset, 'Modality', '?')})"
        )
    seg = hd.seg.Segmentation.from_dataset(dataset)
    uids = [uid for _, _, uid in seg.get_source_image_uids()]
    regions = []
    for number in seg.segment_numbers:
        label = seg.get_segment_description(number).segment_label
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids,
            segment_numbers=[number],
            ignore_spatial_locations=True,
            assert_missing_frames_are_empty=True,
        )
        for uid, mask in zip(uids, pixels[..., 0] > 0, strict=True):
            if mask.any():
                regions.append(Region(label, mask=mask, sop_instance_uid=uid))
    return Annotation(str(path), regions)


def _read_box_csv(path: Path) -> Annotation:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    regions = []
    for n, row in enumerate(rows, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        if "Image Index" in row:  # NIH ChestX-ray14: "Bbox [x", "y", "w", "h]"
            box = [row.get("Bbox [x"), row.get("y"), row.get("w"), row.get("h]")]
            key, label = row["Image Index"], row.get("Finding Label") or "finding"
        elif "patientId" in row:  # RSNA pneumonia: empty box on negative studies
            box = [row.get("x"), row.get("y"), row.get("width"), row.get("height")]
            key, label = row["patientId"], "pneumonia"
        else:
            raise AnnotationError(path, "unknown box CSV (expected NIH 'Image Index' or RSNA 'patientId')")
        if not all(box):
            continue
        try:
            bbox = tuple(float(v) for v in box)
        except ValueError:
            raise AnnotationError(path, f"line {n}: box {box} is not numeric") from None
        regions.append(Region(label, bbox=bbox, file=_stem(key)))
    return Annotation(str(path), regions)


def _read_png_mask(path: Path) -> Annotation:
    """A PNG mask: non-zero pixels are the region; it belongs to the image of the same name, and
    its label is the name's part after the last ``_`` when it has one (``img001_nodule.png``)."""
    mask = np.asarray(PILImage.open(path).convert("L")) > 0
    stem, _, label = path.stem.rpartition("_")
    return Annotation(str(path), [Region(label or "annotation", mask=mask, file=stem or path.stem)])
