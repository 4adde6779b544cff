"""Radiologists' annotations (and phantom ground truth) as masks matched to opened images.

Read from every format of :mod:`viewer.io.annotation_formats`: the JSON the phantom tool writes,
DICOM Segmentation objects, bounding-box CSVs as NIH ChestX-ray14, RSNA Pneumonia and VinDr-CXR
publish them, SIIM-ACR pneumothorax run lengths, CheXlocalize's annotation and segmentation JSON,
COCO JSON, and PNG masks. Regions match image frames by SOP Instance UID, else by file name.
"""

from __future__ import annotations

from pathlib import Path

from viewer.io.annotation_formats import FORMATS
from viewer.io.annotation_formats.limits import check_file_size
from viewer.io.regions import Annotation, AnnotationError, Region, names_of, stem

_SNIFF_BYTES = 4096
# What a file of each suffix is taken for when no format recognises it (its reader says why not).
_FALLBACK = {".json": "saliency-viewer ground truth (JSON)", ".png": "PNG mask"}


def load_annotation(path: Path | str) -> Annotation:
    """Read an annotation file of any supported kind. Raises :class:`AnnotationError` naming the
    file and the reason (also when no line of it could be used: the first line's reason); lines of
    a file that cannot be used are listed in ``problems``."""
    path = Path(path)
    if not path.exists():
        raise AnnotationError(path, "no such file")
    if not path.is_file():
        raise AnnotationError(path, "not a regular file")
    check_file_size(path)
    with path.open("rb") as f:
        head = f.read(_SNIFF_BYTES)
    chosen = next((fmt for fmt in FORMATS if _sniffs(fmt, path, head)), None)
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
        annotation = chosen.read(path)
    except AnnotationError:
        raise
    except RecursionError:
        raise AnnotationError(path, f"cannot read as {chosen.name} (nested too deeply)") from None
    except MemoryError:
        raise AnnotationError(path, f"cannot read as {chosen.name} (not enough memory)") from None
    except ValueError as exc:  # the readers' own word for what is wrong with the file
        text = " ".join(str(exc).split())[:300]
        raise AnnotationError(path, f"cannot read as {chosen.name}: {text}") from None
    except Exception as exc:
        # Readers parse untrusted bytes with pydicom, highdicom, SimpleITK and Pillow, whose
        # exception types are not all documented (InvalidDicomError, RuntimeError, struct.error,
        # zlib.error, EOFError...): whatever one raises, it is this file that cannot be read, and
        # the rest of a folder goes on.
        text = " ".join(str(exc).split())[:300]
        raise AnnotationError(path, f"cannot read as {chosen.name} ({type(exc).__name__}: {text})") from None
    if not annotation.regions and annotation.problems:
        more = len(annotation.problems) - 1
        raise AnnotationError(path, annotation.problems[0] + (f" (and {more} more problems)" if more else ""))
    return annotation


def _sniffs(fmt, path: Path, head: bytes) -> bool:
    """Whether ``fmt`` takes the file; a sniffer that fails on hostile bytes does not."""
    try:
        return fmt.sniff(path, head)
    except Exception:  # the file is then read by the format it does look like, which says why not
        return False


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
