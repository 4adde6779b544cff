"""Annotation file formats, one module each, registered in the order they are tried.

A format says whether it reads a file (``sniff``: from the suffix and the first bytes) and reads
it into an :class:`~viewer.io.regions.Annotation`. A new format is one module here that calls
:func:`register` (and is listed in ``_MODULES``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from viewer.io.dicom_header import looks_like_dicom
from viewer.io.regions import Annotation


@dataclass(frozen=True)
class AnnotationFormat:
    name: str
    sniff: Callable[[Path, bytes], bool]
    read: Callable[[Path], Annotation]


FORMATS: list[AnnotationFormat] = []
_MODULES = (
    "phantom_json",
    "coco_json",  # before CheXlocalize: a COCO file also holds "counts"
    "chexlocalize",
    "box_csv",
    "vindr_csv",
    "siim_rle",
    "png_mask",
    "nifti_labels",
    "rtstruct",
    "dicom_seg",  # last: it takes any other DICOM file, and says why it cannot use it
)


def register(name: str, sniff: Callable[[Path, bytes], bool]):
    def wrap(read: Callable[[Path], Annotation]) -> Callable[[Path], Annotation]:
        FORMATS.append(AnnotationFormat(name, sniff, read))
        return read

    return wrap


def csv_header(head: bytes) -> list[str]:
    """The column names of a CSV file from its first bytes (a BOM and spaces removed)."""
    first = head.decode("utf-8-sig", errors="replace").splitlines()[:1]
    return [c.strip() for c in first[0].split(",")] if first else []


def is_dicom(path: Path, head: bytes) -> bool:
    """Whether a file looks like DICOM: by its first bytes, or named so."""
    return looks_like_dicom(head) or path.suffix.lower() in (".dcm", ".dicom")


def dicom_modality(path: Path, head: bytes) -> str | None:
    """The Modality of a DICOM file (None if it does not look like one), from its header only."""
    if not is_dicom(path, head):
        return None
    import pydicom

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
        return str(header.get("Modality", ""))
    except Exception:  # a sniff never fails: a file pydicom cannot parse is not this format's
        return None


for _module in _MODULES:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["FORMATS", "AnnotationFormat", "csv_header", "dicom_modality", "is_dicom", "register"]
