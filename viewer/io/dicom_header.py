"""Read what discovery needs from a DICOM header without decoding (or even reading) the pixel data.

Each value is read defensively: a malformed element (a bad number, a wrong VR) costs that one value
and a warning, not the file.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

from viewer.io.errors import IsDicomdir, LoadError, describe_exception
from viewer.io.image import Identity, SpacingSource, Window
from viewer.io.sources import FileRef

# Values larger than this are not read while scanning headers (overlays, private blobs, icons).
_DEFER_SIZE = 16 * 1024
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_LITTLE_ENDIAN_IMPLICIT = UID("1.2.840.10008.1.2")
_LITTLE_ENDIAN_EXPLICIT = UID("1.2.840.10008.1.2.1")
_BIG_ENDIAN_EXPLICIT = UID("1.2.840.10008.1.2.2")
_NATIVE_SYNTAXES = {_LITTLE_ENDIAN_IMPLICIT, _LITTLE_ENDIAN_EXPLICIT, _BIG_ENDIAN_EXPLICIT}


@dataclass(frozen=True)
class PixelLocation:
    """Where uncompressed, single-frame pixel data lies in a file, for a direct read."""

    offset: int
    length: int
    dtype: str  # numpy dtype string with byte order, e.g. "<i2"


@dataclass
class HeaderRecord:
    """The header fields of one DICOM file that discovery, grouping and loading use."""

    ref: FileRef
    transfer_syntax: UID
    sop_class_uid: str
    sop_instance_uid: str
    identity: Identity
    has_pixels: bool
    rows: int = 0
    columns: int = 0
    frames: int = 1
    samples_per_pixel: int = 1
    photometric: str = ""
    bits_allocated: int = 0
    bits_stored: int = 0
    pixel_representation: int = 0
    instance_number: int | None = None
    acquisition_number: int | None = None
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, ...] | None = None
    slice_thickness: float | None = None
    spacing: tuple[float, float] = (1.0, 1.0)
    spacing_source: SpacingSource = "none"
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    has_modality_lut_sequence: bool = False
    windows: tuple[Window, ...] = ()
    has_voi_lut_sequence: bool = False
    presentation_lut_shape: str = ""
    is_enhanced: bool = False
    pixel_location: PixelLocation | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def is_compressed(self) -> bool:
        return self.transfer_syntax.is_compressed

    @property
    def syntax_name(self) -> str:
        return transfer_syntax_name(self.transfer_syntax)


def transfer_syntax_name(uid: UID) -> str:
    name = uid.name
    return name if name and name != uid else str(uid)


def looks_like_dicom(head: bytes) -> bool:
    """True for a Part 10 file, or a raw dataset that starts with a plausible group (no preamble)."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    group_le = int.from_bytes(head[0:2], "little")
    # Raw datasets (no preamble) start with the file meta (0002) or identifying (0008) group;
    # 0x0800 is 0008 written big endian.
    return group_le in (0x0002, 0x0008, 0x0800)


def read_dataset(source: str, *, force: bool = False) -> Dataset:
    """The header (no pixel data) of a frame's source, ``FrameInfo.source``: a path on disk or
    ``archive.zip!/member``. Derived objects reference it; the tag browser shows it."""
    with FileRef.parse(source).stream() as f:
        return pydicom.dcmread(f, stop_before_pixels=True, force=force)


def read_header(ref: FileRef) -> HeaderRecord:
    """Read one file's header (no pixel data). Raises :class:`LoadError` with a readable reason."""
    try:
        with ref.stream() as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(fp, stop_before_pixels=True, defer_size=_DEFER_SIZE, force=True)
            stop_position = fp.tell()
            record = header_from_dataset(ds, ref)
            if record.has_pixels and not record.is_compressed:
                record.pixel_location = _locate_native_pixels(fp, stop_position, record, ds)
    except LoadError:
        raise
    except Exception as exc:  # pydicom raises many kinds on corrupt headers
        raise LoadError(str(ref), f"cannot read DICOM header: {describe_exception(exc)}") from exc
    return record


def infer_transfer_syntax(ds: Dataset) -> UID:
    """The transfer syntax, inferred from how pydicom parsed the file when the meta lacks one."""
    meta = getattr(ds, "file_meta", None)
    uid = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if uid:
        return UID(uid)
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None:
        implicit, little = True, True
    if implicit:
        return _LITTLE_ENDIAN_IMPLICIT
    return _LITTLE_ENDIAN_EXPLICIT if little else _BIG_ENDIAN_EXPLICIT


def header_from_dataset(ds: Dataset, ref: FileRef) -> HeaderRecord:
    """Extract a :class:`HeaderRecord` from a parsed dataset (with or without pixel data)."""
    notes: list[str] = []
    get = _Getter(ds, notes)
    has_pixels = any(tag in ds for tag in _PIXEL_TAGS) or _stopped_before_pixels(ds)
    if ds.get("DirectoryRecordSequence") is not None:
        raise IsDicomdir(str(ref))
    identity = Identity(
        patient_name=get.text("PatientName"),
        patient_id=get.text("PatientID"),
        patient_birth_date=get.text("PatientBirthDate"),
        patient_sex=get.text("PatientSex"),
        study_uid=get.text("StudyInstanceUID"),
        study_date=get.text("StudyDate"),
        study_time=get.text("StudyTime"),
        study_description=get.text("StudyDescription"),
        accession_number=get.text("AccessionNumber"),
        institution=get.text("InstitutionName"),
        series_uid=get.text("SeriesInstanceUID"),
        series_number=get.text("SeriesNumber"),
        series_description=get.text("SeriesDescription"),
        modality=get.text("Modality").upper(),
        body_part=get.text("BodyPartExamined"),
        manufacturer=get.text("Manufacturer"),
    )
    record = HeaderRecord(
        ref=ref,
        transfer_syntax=infer_transfer_syntax(ds),
        sop_class_uid=get.text("SOPClassUID"),
        sop_instance_uid=get.text("SOPInstanceUID"),
        identity=identity,
        has_pixels=has_pixels,
        warnings=notes,
    )
    if not has_pixels:
        return record
    record.rows = get.integer("Rows", 0)
    record.columns = get.integer("Columns", 0)
    record.frames = max(get.integer("NumberOfFrames", 1), 1)
    record.samples_per_pixel = get.integer("SamplesPerPixel", 1)
    record.photometric = get.text("PhotometricInterpretation").upper()
    record.bits_allocated = get.integer("BitsAllocated", 0)
    record.bits_stored = get.integer("BitsStored", record.bits_allocated)
    record.pixel_representation = get.integer("PixelRepresentation", 0)
    record.instance_number = get.integer("InstanceNumber", None)
    record.acquisition_number = get.integer("AcquisitionNumber", None)
    record.is_enhanced = "SharedFunctionalGroupsSequence" in ds or "PerFrameFunctionalGroupsSequence" in ds
    record.presentation_lut_shape = get.text("PresentationLUTShape").upper()

    frame_groups = _first_frame_groups(ds)
    plane = _functional_item(frame_groups, "PlanePositionSequence")
    orient = _functional_item(frame_groups, "PlaneOrientationSequence")
    measures = _functional_item(frame_groups, "PixelMeasuresSequence")
    record.position = get.floats("ImagePositionPatient", 3, plane)
    record.orientation = get.floats("ImageOrientationPatient", 6, orient)
    if record.orientation is not None and not _valid_orientation(record.orientation):
        notes.append("ImageOrientationPatient is not two unit vectors at right angles: ignored")
        record.orientation = None
    thickness = get.floats("SliceThickness", 1, measures)
    record.slice_thickness = thickness[0] if thickness else None
    record.spacing, record.spacing_source = _pixel_spacing(get, measures, notes)

    transform = _functional_item(frame_groups, "PixelValueTransformationSequence")
    slope = get.floats("RescaleSlope", 1, transform)
    intercept = get.floats("RescaleIntercept", 1, transform)
    record.rescale_slope = slope[0] if slope else 1.0
    record.rescale_intercept = intercept[0] if intercept else 0.0
    if record.rescale_slope == 0:
        notes.append("RescaleSlope is 0: treated as 1")
        record.rescale_slope = 1.0
    record.has_modality_lut_sequence = "ModalityLUTSequence" in ds
    voi = _functional_item(frame_groups, "FrameVOILUTSequence")
    record.windows = _windows(get, voi)
    record.has_voi_lut_sequence = "VOILUTSequence" in ds
    return record


_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UI", "UT"}
_BINARY_VRS = {"US": "u2", "SS": "i2", "UL": "u4", "SL": "i4", "FL": "f4", "FD": "f8"}
# Character sets in which every header byte decodes as Latin-1 or UTF-8 without pydicom's machinery.
_SIMPLE_CHARSETS = {"", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192"}


@cache
def _tag_and_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    return tag, dictionary_VR(tag)


def _fast_value(ds: Dataset, keyword: str, charset: str) -> Any:
    """A raw element's value decoded directly, or ``_SLOW`` when pydicom must convert it.

    pydicom 3 converts each value through its hook machinery (~25 µs); discovery reads ~40 values
    per file, so plain strings and numbers are decoded here (~2 µs).
    """
    tag, dict_vr = _tag_and_vr(keyword)
    elem = ds.get_item(tag)
    if elem is None:
        return None
    if not isinstance(elem, RawDataElement):
        return _SLOW
    vr = elem.VR or dict_vr
    raw = elem.value
    if elem.length == 0:
        return None
    if raw is None:
        return _SLOW  # deferred (large) value: pydicom reads it from the file
    if vr in _TEXT_VRS and charset in _SIMPLE_CHARSETS:
        text = raw.decode("utf-8" if charset == "ISO_IR 192" else "latin-1")
        parts = [part.strip(" \0") for part in text.split("\\")]
        return parts[0] if len(parts) == 1 else parts
    if vr in _BINARY_VRS and isinstance(raw, bytes):
        values = np.frombuffer(raw, ("<" if elem.is_little_endian else ">") + _BINARY_VRS[vr]).tolist()
        return values[0] if len(values) == 1 else values
    return _SLOW


_SLOW = object()


class _Getter:
    """Tolerant element access: a malformed value becomes the default plus a note."""

    def __init__(self, ds: Dataset, notes: list[str]):
        self.ds = ds
        self.notes = notes
        # pydicom has often converted Specific Character Set already while reading.
        element = ds.get_item(0x00080005)
        value = element.value if element is not None else ""
        if isinstance(value, bytes):
            value = value.decode("latin-1").strip(" \0")
        self.charset = value if isinstance(value, str) else "multiple"

    def raw(self, keyword: str, item: Dataset | None = None) -> Any:
        for source in (item, self.ds):
            if source is None:
                continue
            try:
                value = _fast_value(source, keyword, self.charset)
                if value is _SLOW:
                    value = source.get(keyword)
            except Exception as exc:
                self.notes.append(f"{keyword} unreadable ({describe_exception(exc)}): ignored")
                return None
            if value is not None and value != "":
                return value
        return None

    def text(self, keyword: str) -> str:
        value = self.raw(keyword)
        if value is None:
            return ""
        if isinstance(value, list | tuple | pydicom.multival.MultiValue):
            value = "\\".join(str(v) for v in value)
        return str(value).strip()

    def integer(self, keyword: str, default: Any) -> Any:
        value = self.raw(keyword)
        if value is None:
            return default
        try:
            if isinstance(value, list | tuple | pydicom.multival.MultiValue):
                value = value[0]
            return int(float(value))
        except (TypeError, ValueError, IndexError):
            self.notes.append(f"{keyword} is not a number ({value!r}): ignored")
            return default

    def floats(self, keyword: str, count: int, item: Dataset | None = None) -> tuple[float, ...] | None:
        value = self.raw(keyword, item)
        if value is None:
            return None
        values = list(value) if isinstance(value, list | tuple | pydicom.multival.MultiValue) else [value]
        try:
            numbers = tuple(float(v) for v in values[:count])
        except (TypeError, ValueError):
            self.notes.append(f"{keyword} is not numeric ({value!r}): ignored")
            return None
        if len(numbers) != count or not all(math.isfinite(n) for n in numbers):
            self.notes.append(f"{keyword} needs {count} finite values, has {value!r}: ignored")
            return None
        return numbers

    def all_floats(self, keyword: str, item: Dataset | None = None) -> list[float]:
        value = self.raw(keyword, item)
        if value is None:
            return []
        values = list(value) if isinstance(value, list | tuple | pydicom.multival.MultiValue) else [value]
        try:
            return [float(v) for v in values]
        except (TypeError, ValueError):
            self.notes.append(f"{keyword} is not numeric ({value!r}): ignored")
            return []


def _stopped_before_pixels(ds: Dataset) -> bool:
    # With stop_before_pixels pydicom drops Pixel Data; Rows/Columns/BitsAllocated still say an image follows.
    return all(k in ds for k in ("Rows", "Columns", "BitsAllocated"))


def _first_frame_groups(ds: Dataset) -> list[Dataset]:
    """Shared then first per-frame functional group items of an enhanced multi-frame object."""
    groups = []
    for keyword in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        try:
            seq = ds.get(keyword)
            if seq:
                groups.append(seq[0])
        except Exception:
            continue
    return groups


def _functional_item(groups: list[Dataset], keyword: str) -> Dataset | None:
    for group in groups:
        try:
            seq = group.get(keyword)
            if seq:
                return seq[0]
        except Exception:
            continue
    return None


def _valid_orientation(iop: tuple[float, ...]) -> bool:
    row, col = np.asarray(iop[:3]), np.asarray(iop[3:])
    return bool(
        abs(np.linalg.norm(row) - 1) < 1e-2 and abs(np.linalg.norm(col) - 1) < 1e-2 and abs(row @ col) < 1e-2
    )


def _pixel_spacing(
    get: _Getter, measures: Dataset | None, notes: list[str]
) -> tuple[tuple[float, float], SpacingSource]:
    """In-plane spacing (row, col) in mm, and which attribute it came from.

    A zero or negative PixelSpacing (e.g. "0.000\\0.000", CP-2380) is treated as missing.
    """

    def valid(values: tuple[float, ...] | None) -> bool:
        return values is not None and all(v > 0 for v in values)

    spacing = get.floats("PixelSpacing", 2, measures)
    if valid(spacing):
        return (spacing[0], spacing[1]), "PixelSpacing"
    if spacing is not None:
        notes.append(f"PixelSpacing {spacing[0]:g}\\{spacing[1]:g} is invalid: ignored")
    imager = get.floats("ImagerPixelSpacing", 2)
    if valid(imager):
        ermf = get.floats("EstimatedRadiographicMagnificationFactor", 1)
        if ermf and ermf[0] > 0 and ermf[0] != 1:
            return (imager[0] / ermf[0], imager[1] / ermf[0]), "ImagerPixelSpacing/ERMF"
        if spacing is not None:
            notes.append("using ImagerPixelSpacing (at the detector, not in the patient)")
        return (imager[0], imager[1]), "ImagerPixelSpacing"
    scanned = get.floats("NominalScannedPixelSpacing", 2)
    if valid(scanned):
        return (scanned[0], scanned[1]), "NominalScannedPixelSpacing"
    if spacing is not None:
        notes.append("no valid pixel spacing: distances are in pixels")
    return (1.0, 1.0), "none"


def _windows(get: _Getter, voi: Dataset | None) -> tuple[Window, ...]:
    centers = get.all_floats("WindowCenter", voi)
    widths = get.all_floats("WindowWidth", voi)
    names_raw = get.raw("WindowCenterWidthExplanation", voi)
    if names_raw is None:
        names: list[str] = []
    elif isinstance(names_raw, str):
        names = [names_raw]
    else:
        names = [str(n) for n in names_raw]
    function = (get.text("VOILUTFunction") or "LINEAR").upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        get.notes.append(f"VOILUTFunction {function!r} is unknown: using LINEAR")
        function = "LINEAR"
    windows = []
    for i, (center, width) in enumerate(zip(centers, widths, strict=False)):
        minimum = 1.0 if function == "LINEAR" else 0.0
        if not (math.isfinite(center) and math.isfinite(width)) or width < minimum or width == 0:
            get.notes.append(f"window {center:g}/{width:g} is invalid: ignored")
            continue
        name = names[i].strip() if i < len(names) else ""
        windows.append(Window(center, width, function, name, "file"))
    return tuple(windows)


def _locate_native_pixels(fp, position: int, record: HeaderRecord, ds: Dataset) -> PixelLocation | None:
    """Find uncompressed single-frame grayscale pixel data right after the header, for a direct read.

    Returns None whenever anything is unusual; the caller then decodes with pydicom.
    """
    if record.transfer_syntax not in _NATIVE_SYNTAXES or record.frames != 1:
        return None
    if record.samples_per_pixel != 1 or record.bits_allocated not in (8, 16, 32):
        return None
    if record.photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return None  # PALETTE COLOR values are indices into the palette
    little = record.transfer_syntax != _BIG_ENDIAN_EXPLICIT
    if not little and record.bits_allocated == 8:
        return None  # big-endian 8-bit OW data is byte-swapped in 16-bit words
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        return None
    fp.seek(position)
    head = fp.read(12)
    if len(head) < 8:
        return None
    order = "little" if little else "big"
    if int.from_bytes(head[0:2], order) != 0x7FE0 or int.from_bytes(head[2:4], order) != 0x0010:
        return None
    if record.transfer_syntax == _LITTLE_ENDIAN_IMPLICIT:
        length, start = int.from_bytes(head[4:8], order), position + 8
    elif head[4:6] in (b"OW", b"OB", b"UN") and len(head) == 12:
        length, start = int.from_bytes(head[8:12], order), position + 12
    else:
        return None
    itemsize = record.bits_allocated // 8
    expected = record.rows * record.columns * itemsize
    if length == 0xFFFFFFFF or expected == 0 or length < expected:
        return None  # pydicom's decoder reports the truncation properly
    kind = "i" if record.pixel_representation == 1 else "u"
    byteorder = "<" if little else ">"
    return PixelLocation(start, expected, f"{byteorder}{kind}{itemsize}" if itemsize > 1 else f"{kind}1")
