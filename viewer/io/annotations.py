"""Radiologists' annotations (and phantom ground truth) as masks matched to opened images.

Read from every format of :mod:`viewer.io.annotation_formats`: the JSON the phantom tool writes,
DICOM Segmentation objects, bounding-box CSVs as NIH ChestX-ray14, RSNA Pneumonia and VinDr-CXR
publish them, SIIM-ACR pneumothorax run lengths, CheXlocalize's annotation and segmentation JSON,
COCO JSON, and PNG masks. Regions match image frames by SOP Instance UID, else by file name.
"""

from __future__ import annotations

from pathlib import Path

from viewer.io.annotation_formats import FORMATS
from viewer.io.regions import Annotation, AnnotationError, Region, names_of, stem

_SNIFF_BYTES = 4096
# What a file of each suffix is taken for when no format recognises it (its reader says why not).
_FALLBACK = {".json": "saliency-viewer ground truth (JSON)", ".png": "PNG mask"}


def load_annotation(path: Path | str) -> Annotation:
    """Read an annotation file of any supported kind. Raises :class:`AnnotationError` naming the
    file and the reason; lines of a file that cannot be used are listed in ``problems``."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, "no such file")
    with path.open("rb") as f:
        head = f.read(_SNIFF_BYTES)
    chosen = next((fmt for fmt in FORMATS if fmt.sniff(path, head)), None)
    if chosen is None and path.suffix.lower() == ".csv":
        raise AnnotationError(
            path,
            "unknown box CSV (expected NIH 'Image Index, Finding Label', RSNA 'patientId', "
            "VinDr-CXR 'image_id, class_name' or SIIM 'ImageId, EncodedPixels' columns)",
        )
    if chosen is None:  # DICOM without a preamble, or a file named oddly: its reader says why not
        name = _FALLBACK.get(path.suffix.lower(), "DICOM Segmentation")
        chosen = next(fmt for fmt in FORMATS if fmt.name == name)
    try:
        return chosen.read(path)
    except AnnotationError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise AnnotationError(path, f"cannot read as {chosen.name} ({type(exc).__name__}: {exc})") from None


def annotation_files(paths: list[Path]) -> list[Path]:
    """The annotation files in ``paths`` (folders searched), without the copies a phantom set
    holds twice (its SEG beside its JSON, the PNG masks the JSON names)."""
    files = []
    for path in paths:
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if p.suffix.lower() in (".json", ".dcm", ".csv", ".png", ".nii")
                or p.name.lower().endswith(".nii.gz")
            )
        else:
            files.append(path)
    stems = {p.stem for p in files if p.suffix.lower() == ".json"}
    return [
        p
        for p in files
        if not (p.suffix.lower() == ".dcm" and p.stem.removesuffix("_seg") in stems)
        and not (p.suffix.lower() == ".png" and any(p.stem.startswith(f"{s}_") for s in stems))
    ]


__all__ = [
    "Annotation",
    "AnnotationError",
    "Region",
    "annotation_files",
    "load_annotation",
    "names_of",
    "stem",
]
