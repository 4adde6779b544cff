"""Exports of saliency results that can go back to a PACS: Parametric Maps and Secondary Captures.

A Parametric Map keeps the map's float values on the image's own grid, so a viewer that knows the
object (OHIF, Slicer, Slim) can fuse, window and measure it; a Secondary Capture is the universal
fallback, an RGB screenshot with the overlay burned in. Both are a new series in the image's study,
referencing the source instances. Sources are only read, never written; outputs are written
atomically and never overwrite anything.

Anonymisation (``anonymize=True``) replaces patient name and ID by ``ANONYMOUS``, blanks birth date,
accession number, study ID and referring physician, takes nothing else from the source header but
the image's grid and geometry and study date, time, patient sex and body part (so institution,
physicians, other patient details and private tags stay behind), and replaces every UID that would
link the export to the original study (study, series, instance, frame of reference) by a UID hashed
from it. The replacement is deterministic, so several anonymised exports of one
study still form one (anonymised) study and reference the same (renamed) instances, but they no
longer attach to the original study. It is not a full PS3.15 de-identification: dates, sex and
pixel content are kept, and whoever holds the original UIDs can recompute the hashed ones. Without
anonymisation the export keeps the study's UIDs and references the original instances, so the PACS
files it under the study.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from highdicom.spatial import get_image_coordinate_system
from highdicom.utils import get_plane_positions_of_image
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

from viewer import __version__
from viewer.io.dicom_header import read_dataset
from viewer.io.dicom_writer import make_uid, write_atomic
from viewer.io.image import Image
from viewer.io.overlay import colormap

MANUFACTURER = "Saliency Viewer"
PM_SERIES_NUMBER = 9001
SC_SERIES_NUMBER = 9002
_CONVENTIONS = ("unit", "absolute", "signed")
_NOT_FOR_DIAGNOSIS = "AI-generated, not for diagnosis"

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
# Type 2 attributes of the patient and study that derived objects must carry, present but neutral.
_REPLACED = {
    # The trailing caret marks "ANONYMOUS" as a family name rather than an unparsed single component.
    "PatientName": "ANONYMOUS^",
    "PatientID": "ANONYMOUS",
    "PatientBirthDate": "",
    "AccessionNumber": "",
    "StudyID": "",
    "ReferringPhysicianName": "",
}
_LINKING_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
# Functional groups of multi-frame sources: only their geometry is needed.
_GEOMETRY_GROUPS = ("PixelMeasuresSequence", "PlanePositionSequence", "PlaneOrientationSequence")


def anonymized_uid(uid: str) -> str:
    """The UID that stands in for ``uid`` in anonymised exports (the same one every time)."""
    return str(make_uid("anonymized", uid))


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
    for keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        if keyword in ds:
            setattr(out, keyword, [_geometry_only(item) for item in ds.get(keyword)])
    return out


def _geometry_only(item: Dataset) -> Dataset:
    out = Dataset()
    for keyword in _GEOMETRY_GROUPS:
        if keyword in item:
            out[keyword] = copy.deepcopy(item[keyword])
    return out


def _new_uid(kind: str) -> str:
    # Every export is a new object: random, under the project's UID root.
    return str(make_uid(kind, uuid.uuid4()))


def _lo(text: str) -> str:
    """A value that fits a LO (Long String) attribute: 64 characters, no backslash."""
    return text.replace("\\", "/")[:64]


def _require_dicom(image: Image) -> None:
    if image.kind != "dicom":
        raise ValueError(
            "only DICOM images can be exported to DICOM (this one was opened from a raster file)"
        )


def _check_frame(image: Image, index: int) -> None:
    if not 0 <= index < image.n_frames:
        raise ValueError(f"frame {index} is outside the image (0..{image.n_frames - 1})")


def is_class_activation(method: str) -> bool:
    """Whether a method belongs to the CAM family (its id contains ``cam``: gradcam, scorecam...)."""
    return "cam" in method.lower()


def _references(image: Image, frames: Sequence[int], anonymize: bool) -> tuple[list[Dataset], list[int]]:
    """The source headers to hand to highdicom and, per exported frame, its 0-based frame number
    inside its source file. One header per file, in the order of ``frames``."""
    headers: dict[str, Dataset] = {}
    numbers = []
    for index in frames:
        info = image.frames[index]
        if info.source not in headers:
            ds = read_dataset(info.source)
            headers[info.source] = anonymize_header(ds) if anonymize else ds
        numbers.append(info.frame_index)
    return list(headers.values()), numbers


def _is_multiframe(ds: Dataset) -> bool:
    return int(ds.get("NumberOfFrames", 1) or 1) > 1


def _projection_measures(ds: Dataset) -> hd.PixelMeasuresSequence:
    """Projection images have no slice geometry, but readers (highdicom's too) expect a Pixel
    Measures item with both spacing and thickness."""
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing") or [1.0, 1.0]
    return hd.PixelMeasuresSequence(pixel_spacing=[float(v) for v in spacing], slice_thickness=1.0)


def _single_frame_stand_in(ds: Dataset, frame_number: int) -> Dataset:
    """One frame of a multi-frame source without a frame of reference, as highdicom accepts only a
    single frame there; the reference to the real frame number is restored afterwards."""
    out = copy.deepcopy(ds)
    out.NumberOfFrames = 1
    if "PerFrameFunctionalGroupsSequence" in out:
        out.PerFrameFunctionalGroupsSequence = [out.PerFrameFunctionalGroupsSequence[frame_number]]
    if "SharedFunctionalGroupsSequence" not in out:
        # highdicom reads a multi-frame source's pixel measures from its shared functional groups.
        shared = Dataset()
        shared.PixelMeasuresSequence = _projection_measures(ds)
        out.SharedFunctionalGroupsSequence = [shared]
    return out


def _geometry_arguments(sources: list[Dataset], numbers: list[int]) -> tuple[list[Dataset], dict, bool]:
    """highdicom arguments that reference exactly the exported frames of the sources, and whether
    the references' frame numbers must be set afterwards (see :func:`_single_frame_stand_in`)."""
    first = sources[0]
    has_geometry = get_image_coordinate_system(first) is not None
    if len(sources) > 1:
        if any(_is_multiframe(s) for s in sources):
            raise ValueError("frames from several multi-frame files cannot be referenced by one object")
        return sources, {}, False
    if not _is_multiframe(first):
        return sources, ({} if has_geometry else {"pixel_measures": _projection_measures(first)}), False
    if has_geometry:
        # Explicit positions of the chosen frames: highdicom matches them to source frame numbers.
        positions = get_plane_positions_of_image(first)
        return sources, {"plane_positions": [positions[k] for k in numbers]}, False
    if len(numbers) != 1:
        raise ValueError(
            "a multi-frame source without a frame of reference can only be exported one frame at a time"
        )
    return [_single_frame_stand_in(first, numbers[0])], {"pixel_measures": _projection_measures(first)}, True


def _set_frame_numbers(dataset: Dataset, numbers: list[int]) -> None:
    """Reference source frame ``numbers[i] + 1`` from output frame ``i`` (multi-frame stand-in)."""
    for item, number in zip(dataset.PerFrameFunctionalGroupsSequence, numbers, strict=True):
        for derivation in item.get("DerivationImageSequence", []):
            for source in derivation.get("SourceImageSequence", []):
                source.ReferencedFrameNumber = number + 1


class _ParametricMap(hd.pm.ParametricMap):
    """highdicom 0.28 indexes the frames of a map of an image without a frame of reference (a
    radiograph) by Frame Label, yet gives the frames no label nor index value, and then rejects its
    own object. The missing values are filled in before that check."""

    def _build_luts(self) -> None:
        pointers = [item.DimensionIndexPointer for item in self.get("DimensionIndexSequence", [])]
        if pointers == [tag_for_keyword("FrameLabel")]:
            for item in self.get("PerFrameFunctionalGroupsSequence", []):
                content = item.FrameContentSequence[0]
                if not content.get("DimensionIndexValues"):
                    content.DimensionIndexValues = [1]
                    content.FrameLabel = "SALIENCY"
        super()._build_luts()


def _palette(name: str) -> hd.PaletteColorLUTTransformation:
    # 16-bit entries (8-bit values replicated): 8-bit palette data is ambiguous for some readers.
    table = colormap(name).astype(np.uint16) * 257
    return hd.PaletteColorLUTTransformation.from_combined_lut(
        table, palette_color_lut_uid=_new_uid("palette")
    )


def _add_float_palette(pm: Dataset, palette: Dataset, low: float, high: float) -> None:
    """Attach a Palette Color LUT to a float map (PS3.3 C.7.6.16.2.26, PS3.17 BBBB): values from
    ``low`` to ``high`` are spread linearly over the palette. highdicom 0.28 only does this for
    integer maps, so the attributes are added here."""
    for element in palette:
        pm[element.tag] = element
    pm.PixelPresentation = "COLOR_RANGE"
    color_range = Dataset()
    color_range.MinimumStoredValueMapped = float(low)
    color_range.MaximumStoredValueMapped = float(high)
    pm.SharedFunctionalGroupsSequence[0].StoredValueColorRangeSequence = [color_range]


def write_parametric_map(
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
) -> Path:
    """Write a saliency map as a DICOM Parametric Map (float32) referencing the source frames.

    ``values`` is float32 ``(len(frames), rows, cols)`` on the image's native grid (a 2-D map for a
    single frame will do): [0, 1] for the ``unit`` and ``absolute`` conventions, [-1, 1] for
    ``signed``; the window and palette stretch to cover values beyond that.

    The object is a new series in the image's study: quantity DCM 130402 "Class activation" for
    CAM-family methods, else DCM 130404 "Saliency", no units (UCUM "1"); a Real World Value Mapping
    labelled ``SALIENCY`` that names the method, target and model; a jet (diverging for signed
    maps) palette and a VOI window over the value range. ``method`` is used as given in the
    descriptions ("Grad-CAM: effusion (cxr_resnet18)" for the title, or the id). Refuses to
    overwrite ``out``; see the module docstring for ``anonymize``.
    """
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; refusing to overwrite it")
    _require_dicom(image)
    if convention not in _CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {', '.join(_CONVENTIONS)}")
    frames = [int(f) for f in frames]
    if not frames:
        raise ValueError("no frames to export")
    if len(set(frames)) != len(frames):
        raise ValueError(f"frames {frames} repeat a frame")
    for index in frames:
        _check_frame(image, index)
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

    sources, numbers = _references(image, frames, anonymize)
    sources, geometry, stand_in = _geometry_arguments(sources, numbers)

    signed = convention == "signed"
    low = min(-1.0 if signed else 0.0, float(values.min()))
    high = max(1.0, float(values.max()))
    quantity = codes.DCM.ClassActivation if is_class_activation(method) else codes.DCM.Saliency
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="SALIENCY",
        lut_explanation=_lo(f"{method} for {target}, model {model_name}"),
        unit=codes.UCUM.NoUnits,
        value_range=(low, high),
        slope=1.0,
        intercept=0.0,
        quantity_definition=quantity,
    )
    series_uid = _new_uid("parametric-map-series")
    pm = _ParametricMap(
        source_images=sources,
        pixel_array=values,
        series_instance_uid=series_uid,
        series_number=PM_SERIES_NUMBER,
        sop_instance_uid=_new_uid("parametric-map"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=_lo(f"{MANUFACTURER} {model_name}"),
        software_versions=__version__,
        device_serial_number="0",
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        # LINEAR_EXACT: the plain LINEAR function is undefined for windows narrower than 1.
        voi_lut_transformations=[
            hd.VOILUTTransformation(
                window_center=(low + high) / 2,
                window_width=high - low,
                window_explanation="SALIENCY",
                voi_lut_function=hd.VOILUTFunctionValues.LINEAR_EXACT,
            )
        ],
        content_label="SALIENCY",
        content_description=_lo(f"{method} map; {_NOT_FOR_DIAGNOSIS}"),
        series_description=_lo(f"{method}: {target} ({model_name})"),
        **geometry,
    )
    if stand_in:
        _set_frame_numbers(pm, numbers)
    _add_float_palette(pm, _palette("diverging" if signed else "jet"), low, high)
    return write_atomic(pm, out)


def _patient_orientation(ds: Dataset) -> list[str] | None:
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


def write_secondary_capture(
    image: Image,
    rgb: np.ndarray,
    *,
    frame: int,
    out: Path,
    description: str,
    anonymize: bool = False,
) -> Path:
    """Write an RGB screenshot (``(rows, cols, 3)`` uint8, overlay burned in) as a Secondary Capture.

    A new series (DERIVED\\SECONDARY, BurnedInAnnotation YES) in the study of ``frame``'s source,
    referencing that frame. ``rgb`` may have any size: a screenshot of the same size as the image is
    taken to be on its grid (pixel spacing and orientation copied); any other size has neither,
    since a screenshot's zoom and margins are unknown. Refuses to overwrite ``out``.
    """
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; refusing to overwrite it")
    _require_dicom(image)
    _check_frame(image, frame)
    rgb = np.asarray(rgb)
    if rgb.ndim == 3 and rgb.shape[2] == 4:
        rgb = rgb[..., :3]  # RGBA grabs: a Secondary Capture has no alpha
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8 (rows, cols, 3); got {rgb.dtype} {rgb.shape}")
    rgb = np.ascontiguousarray(rgb)

    info = image.frames[frame]
    source = read_dataset(info.source)
    if anonymize:
        source = anonymize_header(source)
    on_grid = rgb.shape[:2] == (image.rows, image.columns)
    orientation = _patient_orientation(source) if on_grid else None
    spacing = None
    if on_grid and image.geometry.spacing_source == "PixelSpacing":
        spacing = (image.geometry.row_spacing, image.geometry.col_spacing)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=rgb,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=_new_uid("secondary-capture-series"),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=_new_uid("secondary-capture"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        pixel_spacing=spacing,
        # highdicom requires an orientation for patient images; emptied below when unknown.
        patient_orientation=("L", "F"),
        series_description=_lo(description),
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    # Patient Orientation is type 2C: present, empty when the screenshot's orientation is unknown.
    sc.PatientOrientation = orientation or ""
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.BurnedInAnnotation = "YES"
    sc.DerivationDescription = _lo(f"Screenshot with overlay; {_NOT_FOR_DIAGNOSIS}")
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if _is_multiframe(source):
        reference.ReferencedFrameNumber = info.frame_index + 1
    sc.SourceImageSequence = [reference]
    return write_atomic(sc, out)


__all__ = [
    "anonymize_header",
    "anonymized_uid",
    "is_class_activation",
    "write_parametric_map",
    "write_secondary_capture",
]
