"""What every derived DICOM object the viewer writes shares: the source headers it references,
anonymisation, UIDs, and the conditional attributes validators (dciodvfy) insist on.

Anonymisation (``anonymize=True``) replaces patient name and ID by ``ANONYMOUS`` and the study ID
by a hashed stand-in, blanks birth date, accession number and referring physician, takes nothing
else from the source header but the image's grid and geometry and study date, time, patient sex
and body part (so institution, physicians, other patient details and private tags stay behind),
and replaces every UID that would link the export to the original study (study, series, instance,
frame of reference) by a UID hashed from it. The replacement is deterministic, so several
anonymised exports of one study still form one (anonymised) study and reference the same
(renamed) instances, but they no longer attach to the original study. It is not a full PS3.15
de-identification: dates, sex and pixel content are kept, and whoever holds the original UIDs can
recompute the hashed ones. Without anonymisation the export keeps the study's UIDs and references
the original instances, so the PACS files it under the study.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from viewer import __version__
from viewer.io.dicom_header import read_dataset
from viewer.io.dicom_writer import anonymized_uid, make_uid
from viewer.io.image import Image

MANUFACTURER = "Saliency Viewer"
CONVENTIONS = ("unit", "absolute", "signed")
NOT_FOR_DIAGNOSIS = "AI-generated, not for diagnosis"

# What an anonymised export takes from its source: the image's kind, grid and geometry, and study
# context that does not identify anyone. Everything else (patient details, physicians, institution,
# requests, private tags) is left behind: an allowlist, so nothing unforeseen slips through.
_KEPT = (
    "SpecificCharacterSet",
    "SOPClassUID",
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "StudyDate",
    "StudyTime",
    "PatientSex",
    "BodyPartExamined",
    "Laterality",
    "ImageLaterality",
    "SeriesNumber",
    "InstanceNumber",
    "PatientOrientation",
    "PositionReferenceIndicator",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "SliceThickness",
    "SpacingBetweenSlices",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
)
_METHOD = "Saliency Viewer: names and IDs replaced, UIDs hashed; dates kept"
# Type 2 attributes of the patient and study that derived objects must carry, present but neutral.
_REPLACED = {
    # The trailing caret marks "ANONYMOUS" as a family name rather than an unparsed single component.
    "PatientName": "ANONYMOUS^",
    "PatientID": "ANONYMOUS",
    "PatientBirthDate": "",
    "AccessionNumber": "",
    "ReferringPhysicianName": "",
}
# Type 2 attributes of the Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1): a source
# must carry them, possibly empty, but real files often leave some out (a CR without Patient's Sex
# or Study Time), and highdicom reads them from the source as attributes, failing on the first
# one missing. A derived object carries them empty, as the source meant.
_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)
_DEIDENTIFICATION = ("DeidentificationMethod", "DeidentificationMethodCodeSequence")
_LINKING_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
# Functional groups of multi-frame sources: only their geometry is needed.
_GEOMETRY_GROUPS = ("PixelMeasuresSequence", "PlanePositionSequence", "PlaneOrientationSequence")


def anonymize_header(ds: Dataset) -> Dataset:
    """The parts of a source header an anonymised export may use, with patient identifiers replaced
    and linking UIDs hashed (see the module docstring)."""
    out = Dataset()
    for keyword in _KEPT:
        if keyword in ds:
            out[keyword] = copy.deepcopy(ds[keyword])
    for keyword, value in _REPLACED.items():
        setattr(out, keyword, value)
    for keyword in _LINKING_UIDS:
        if keyword in ds:
            setattr(out, keyword, anonymized_uid(str(ds.get(keyword))))
    # A dummy Study ID (PS3.15 action Z) rather than an empty one: archives and DICOMDIRs index
    # studies by it. Hashed from the study, so one anonymised study keeps one ID.
    out.StudyID = anonymized_uid(str(ds.get("StudyInstanceUID", "")))[-16:].lstrip(".")
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = _METHOD
    for keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        if keyword in ds:
            setattr(out, keyword, [_geometry_only(item) for item in ds.get(keyword)])
    return out


def with_type2(ds: Dataset) -> Dataset:
    """``ds`` itself, or, when it lacks some of the patient's and study's Type 2 attributes, a copy
    with them present and empty (see ``_TYPE2``); the source (and the file) is never changed."""
    missing = [keyword for keyword in _TYPE2 if keyword not in ds]
    if not missing:
        return ds
    out = copy.deepcopy(ds)  # a header only (no pixel data): small, and shares nothing with ds
    for keyword in missing:
        setattr(out, keyword, "")
    return out


def _geometry_only(item: Dataset) -> Dataset:
    out = Dataset()
    for keyword in _GEOMETRY_GROUPS:
        if keyword in item:
            out[keyword] = copy.deepcopy(item[keyword])
    return out


def new_uid(kind: str) -> str:
    # Every export is a new object: random, under the project's UID root.
    return str(make_uid(kind, uuid.uuid4()))


def new_series(kind: str, number: int, model_name: str) -> dict:
    """highdicom's arguments for a derived object's new series and its equipment (the viewer,
    with the model's name): the same on every object the viewer writes about a map."""
    return {
        "series_instance_uid": new_uid(f"{kind}-series"),
        "series_number": number,
        "sop_instance_uid": new_uid(kind),
        "instance_number": 1,
        "manufacturer": MANUFACTURER,
        "manufacturer_model_name": lo(f"{MANUFACTURER} {model_name}"),
        "software_versions": __version__,
        "device_serial_number": "0",
    }


def lo(text: str) -> str:
    """A value that fits a LO (Long String) attribute: 64 characters, no backslash."""
    return text.replace("\\", "/")[:64]


def require_dicom(image: Image) -> None:
    if image.kind != "dicom":
        raise ValueError(
            "only DICOM images can be exported to DICOM (this one was opened from a raster file)"
        )


def check_frame(image: Image, index: int) -> None:
    if not 0 <= index < image.n_frames:
        raise ValueError(f"frame {index} is outside the image (0..{image.n_frames - 1})")


def is_class_activation(method: str) -> bool:
    """Whether a method belongs to the CAM family (its id contains ``cam``: gradcam, scorecam...)."""
    return "cam" in method.lower()


def source_headers(image: Image, frames: Sequence[int], anonymize: bool) -> tuple[list[Dataset], list[int]]:
    """The source headers to hand to highdicom and, per exported frame, its 0-based frame number
    inside its source file. One header per file, in the order of ``frames``."""
    headers: dict[str, Dataset] = {}
    numbers = []
    for index in frames:
        info = image.frames[index]
        if info.source not in headers:
            ds = with_frame_of_reference(read_dataset(info.source))
            headers[info.source] = with_type2(anonymize_header(ds) if anonymize else ds)
        numbers.append(info.frame_index)
    return list(headers.values()), numbers


def with_frame_of_reference(ds: Dataset) -> Dataset:
    """``ds`` itself, or, for slices that have patient positions but lost their Frame of Reference
    UID (de-identified sets such as CQ500 strip it), a copy with one derived from the series UID:
    the same for every slice of the series, so the derived object can place them. The file on
    disk is not touched."""
    if "FrameOfReferenceUID" in ds or "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
        return ds
    out = copy.copy(ds)  # shallow: only the new element differs
    out.FrameOfReferenceUID = str(make_uid("frame-of-reference", str(ds.get("SeriesInstanceUID", ""))))
    out.PositionReferenceIndicator = ""
    return out


def is_multiframe(ds: Dataset) -> bool:
    return int(ds.get("NumberOfFrames", 1) or 1) > 1


def projection_measures(ds: Dataset) -> hd.PixelMeasuresSequence:
    """Projection images have no slice geometry, but readers (highdicom's too) expect a Pixel
    Measures item with both spacing and thickness. Spacings of zero (written by some CR readers,
    e.g. "0.000\\0.000") are no spacing: the next source is tried, then 1 mm."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        spacing = [float(v) for v in ds.get(keyword) or []]
        if len(spacing) == 2 and min(spacing) > 0:
            break
    else:
        spacing = [1.0, 1.0]
    return hd.PixelMeasuresSequence(pixel_spacing=spacing, slice_thickness=1.0)


def patient_orientation(ds: Dataset) -> list[str] | None:
    """The source's row and column directions as patient-orientation letters, when known."""
    if ds.get("PatientOrientation"):
        return [str(v) for v in ds.PatientOrientation]
    iop = ds.get("ImageOrientationPatient")
    shared = ds.get("SharedFunctionalGroupsSequence")
    if iop is None and shared and "PlaneOrientationSequence" in shared[0]:
        iop = shared[0].PlaneOrientationSequence[0].get("ImageOrientationPatient")  # enhanced objects
    if not iop or len(iop) != 6:
        return None
    letters = []
    for vector in (np.asarray(iop[:3], float), np.asarray(iop[3:], float)):
        text = ""
        # Letters by decreasing weight, as PS3.3 C.7.6.1.1.1 writes oblique directions.
        for axis in np.argsort(-np.abs(vector)):
            if abs(vector[axis]) > 1e-3:
                text += ("LR", "PA", "HF")[axis][0 if vector[axis] > 0 else 1]
        letters.append(text)
    return letters


def check_map(
    image: Image, values: np.ndarray, frames: Sequence[int], convention: str
) -> tuple[list[int], np.ndarray]:
    """The frame indices and float32 ``(len(frames), rows, cols)`` values of a map to export, or a
    ValueError that says what is wrong with them. A 2-D map stands for a single frame."""
    require_dicom(image)
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
    frames = [int(f) for f in frames]
    if not frames:
        raise ValueError("no frames to export")
    if len(set(frames)) != len(frames):
        raise ValueError(f"frames {frames} repeat a frame")
    for index in frames:
        check_frame(image, index)
    values = np.asarray(values, np.float32)
    if values.ndim == 2 and len(frames) == 1:
        values = values[None]
    if values.shape != (len(frames), image.rows, image.columns):
        raise ValueError(
            f"values are {values.shape}; expected {(len(frames), image.rows, image.columns)} "
            "(one map per frame on the image's grid)"
        )
    if not np.isfinite(values).all():
        raise ValueError("values contain NaN or infinity")
    return frames, values


@dataclass(frozen=True)
class MapExport:
    """A checked map to write as DICOM, with the headers of the source frames it covers."""

    values: np.ndarray  # float32 (frames, rows, cols)
    sources: list[Dataset]  # one header per source file (anonymised if asked)
    numbers: list[int]  # per exported frame, its 0-based frame number inside its file
    out: Path
    method: str
    target: str
    model_name: str
    convention: str


def prepare_map(
    image: Image,
    values: np.ndarray,
    *,
    frames: Sequence[int],
    out: Path,
    method: str,
    target: str,
    model_name: str,
    convention: str = "unit",
    anonymize: bool = False,
) -> MapExport:
    """Check a map and read its sources' headers once, for whichever object will hold it."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; refusing to overwrite it")
    frames, values = check_map(image, values, frames, convention)
    sources, numbers = source_headers(image, frames, anonymize)
    return MapExport(values, sources, numbers, out, method, target, model_name, convention)


def has_frame_of_reference(ds: Dataset) -> bool:
    """Whether the source lies in a patient frame of reference (CT, MR), not a projection. ``ds``
    is a header from :func:`source_headers`, so slices that lost their UID already have one."""
    return "FrameOfReferenceUID" in ds and hd.spatial.get_image_coordinate_system(ds) is not None


def complete_conditional(derived: Dataset, source: Dataset) -> None:
    """Fill what highdicom leaves out and PS3.3's conditions then require of a derived image:

    - Body Part Examined, copied: without it a validator cannot tell an unpaired body part (chest,
      head) and requires Laterality (General Series, Type 2C) of every object;
    - Laterality: the source's; else its R/L Image Laterality; else, when no body part says it is
      unpaired, empty (unknown). Never on a Segmentation (the condition excludes it);
    - the de-identification method (Type 1C when Patient Identity Removed is YES): the source's,
      or "not recorded" for a source that claims de-identification without saying how;
    - Patient Orientation (General Image, Type 2C), for an image without orientation vectors (a
      radiograph): the source's letters, or empty when unknown.
    """
    if "BodyPartExamined" in source and "BodyPartExamined" not in derived:
        derived.BodyPartExamined = source.BodyPartExamined
    if "SegmentSequence" not in derived and "Laterality" not in derived:
        if "Laterality" in source:
            derived.Laterality = source.Laterality
        elif source.get("ImageLaterality") in ("R", "L"):
            derived.Laterality = source.ImageLaterality
        elif "BodyPartExamined" not in derived:
            derived.Laterality = ""
    if derived.get("PatientIdentityRemoved") == "YES":
        for keyword in _DEIDENTIFICATION:
            if keyword in source and keyword not in derived:
                derived[keyword] = copy.deepcopy(source[keyword])
        if not any(keyword in derived for keyword in _DEIDENTIFICATION):
            derived.DeidentificationMethod = "Not recorded in the source"
    if "FrameOfReferenceUID" in derived or "ImageOrientationPatient" in derived:
        return
    if "PatientOrientation" not in derived:  # present and empty: the writer knows it is unknown
        derived.PatientOrientation = patient_orientation(source) or ""
