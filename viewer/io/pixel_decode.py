"""Decode DICOM pixel data and apply the Modality LUT: stored values -> real-world values.

Steps, per DICOM PS3.3 C.7.6.3 / C.11.1: decode (pydicom with the pylibjpeg/pyjpegls plugins, YBR
converted to RGB), PALETTE COLOR expanded to RGB, then for grayscale the Modality LUT (Rescale
Slope/Intercept, per frame for enhanced objects, or the Modality LUT Sequence). VOI and
MONOCHROME1 inversion are display steps and live in :mod:`viewer.io.voi`.

This module runs inside decoder worker processes too, so it imports nothing heavy. What a file
declares is held to the budget per file (:mod:`viewer.io.budgets`) before pydicom reads it: the
file's own size first (a sparse file can declare gigabytes in a few kilobytes of disk), then the
header's rows x columns x frames.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, apply_modality_lut

from viewer.io.budgets import decoded_bytes, over_budget
from viewer.io.errors import LoadError
from viewer.io.image import VoiLut
from viewer.io.sources import FileRef


@dataclass
class Decoded:
    """Decoded pixels with a leading frame axis: float32 real-world values, or RGB integers."""

    pixels: np.ndarray
    photometric: str
    voi_luts: tuple[VoiLut, ...] = ()
    notes: tuple[str, ...] = ()


def decode_file(ref: FileRef) -> Decoded:
    """Read a whole file and decode it (used for compressed and unusual files). A file larger
    than the budget per file is refused unread: pydicom holds all of it at once, and its pixels
    (compressed, or stored in fewer bytes than float32) take more once decoded."""
    if reason := over_budget("file", ref.size(), "load_bytes"):
        raise LoadError(str(ref), reason)
    with ref.open() as fp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(fp, force=True)
    return decode_dataset(ds, str(ref))


def decode_dataset(ds: Dataset, name: str = "<dataset>") -> Decoded:
    """Decode a parsed dataset. Raises :class:`LoadError` with a readable reason."""
    from viewer.io.dicom_header import infer_transfer_syntax  # local: keeps worker import light

    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise LoadError(name, "has no pixel data (the file may be truncated)")
    if not getattr(ds, "file_meta", None):
        ds.file_meta = FileMetaDataset()
    if not ds.file_meta.get("TransferSyntaxUID"):
        # Raw datasets without a meta header: decode with the encoding pydicom read them in.
        ds.file_meta.TransferSyntaxUID = infer_transfer_syntax(ds)
    _check_size(ds, name)
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        array = ds.pixel_array
    frames = _int(ds, "NumberOfFrames", 1) or 1
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    samples = _int(ds, "SamplesPerPixel", 1)
    if photometric == "PALETTE COLOR":
        array = apply_color_lut(array, ds)
        photometric = "RGB"
    elif samples == 3 or array.ndim == (4 if frames > 1 else 3):
        photometric = "RGB"  # pydicom converts YBR_* to RGB while decoding
    color = photometric == "RGB"
    if frames == 1 or array.ndim == (2 if not color else 3):
        array = array[np.newaxis]
    if color:
        return Decoded(np.ascontiguousarray(array), "RGB", notes=tuple(notes))
    pixels = _real_units(array, ds, notes)
    return Decoded(pixels, photometric or "MONOCHROME2", read_voi_luts(ds), tuple(notes))


def real_units(
    stored: np.ndarray,
    slope: float,
    intercept: float,
    *,
    modality: str = "",
    bits_stored: int = 16,
    pixel_representation: int = 0,
    out: np.ndarray | None = None,
    notes: list[str] | None = None,
) -> np.ndarray:
    """Rescale stored values to real-world units as float32: ``stored * slope + intercept``.

    Corrects the RSNA intracranial-haemorrhage export quirk: unsigned 12-bit CT with an intercept
    above -100 whose values need +1000 (wrapping at 4096) before a -1000 intercept.
    """
    if modality == "CT" and bits_stored == 12 and pixel_representation == 0 and intercept > -100:
        stored = stored.astype(np.int32) + 1000
        stored[stored >= 4096] -= 4096
        intercept = -1000.0
        if notes is not None:
            notes.append("12-bit CT with intercept > -100: applied the RSNA rescale correction")
    if out is None:
        out = np.empty(stored.shape, np.float32)
    if float(slope).is_integer() and float(intercept).is_integer():
        # Integer rescale is exact in float32 over any stored range a CT uses.
        np.copyto(out, stored, casting="unsafe")
        if slope != 1.0:
            out *= np.float32(slope)
        if intercept != 0.0:
            out += np.float32(intercept)
    else:
        # Fractional slopes: compute in float64 and round once, as the reference does.
        np.copyto(out, stored * np.float64(slope) + np.float64(intercept), casting="unsafe")
    return out


def read_native(
    data: bytes, length: int, name: str, dtype: str, bits_stored: int, *, before: int = 0, total: int = 0
) -> np.ndarray:
    """Stored values of uncompressed pixel data from ``data``, a block of ``length`` bytes read
    from the file, with unused high bits cleared or the sign extended; raises
    :class:`LoadError` if the file ended before the block did. A block read after ``before``
    values of the ``total`` the header declares says how many of the whole the file holds."""
    dt = np.dtype(dtype)
    count = length // dt.itemsize
    if len(data) < count * dt.itemsize:
        held, declared = before + len(data) // dt.itemsize, max(total, before + count)
        raise LoadError(
            name,
            f"pixel data truncated: the file holds {held:,} of the {declared:,} values its header declares",
        )
    stored = np.frombuffer(data, dt, count)
    stored = stored.astype(dt.newbyteorder("="), copy=False)
    shift = dt.itemsize * 8 - bits_stored
    if 0 < shift < dt.itemsize * 8:
        # Clear unused high bits (unsigned) or sign-extend (signed), as pydicom does.
        stored = np.right_shift(np.left_shift(stored, shift), shift)
    return stored


def read_voi_luts(ds: Dataset) -> tuple[VoiLut, ...]:
    luts = []
    try:
        sequence = ds.get("VOILUTSequence") or []
        for i, item in enumerate(sequence):
            descriptor = [int(v) for v in item.LUTDescriptor]
            table = _lut_table(item, descriptor)
            first = descriptor[1]
            if descriptor[1] > 32767 and ds.get("PixelRepresentation", 0) == 1:
                first -= 65536  # the first mapped value is signed for signed pixel data
            name = str(item.get("LUTExplanation", "")) or f"File VOI LUT {i + 1}"
            luts.append(VoiLut(first, table, name))
    except Exception:
        return tuple(luts)  # a broken VOI LUT loses the LUT, not the image
    return tuple(luts)


def _lut_table(item: Dataset, descriptor: list[int]) -> np.ndarray:
    entries = descriptor[0] or 65536
    raw = item.LUTData
    if isinstance(raw, bytes):
        dtype = "<u2" if descriptor[2] > 8 else "u1"
        table = np.frombuffer(raw, dtype)
    else:
        table = np.asarray(raw if isinstance(raw, list | tuple) or hasattr(raw, "__len__") else [raw])
    return table[:entries].astype(np.float32)


def _real_units(array: np.ndarray, ds: Dataset, notes: list[str]) -> np.ndarray:
    if array.dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    if "ModalityLUTSequence" in ds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(apply_modality_lut(array, ds), dtype=np.float32)
    modality = str(ds.get("Modality", "")).upper()
    bits_stored = _int(ds, "BitsStored", 16)
    pixrep = _int(ds, "PixelRepresentation", 0)
    transforms = _per_frame_transforms(ds, array.shape[0])
    out = np.empty(array.shape, np.float32)
    for i, (slope, intercept) in enumerate(transforms):
        real_units(
            array[i],
            slope,
            intercept,
            modality=modality,
            bits_stored=bits_stored,
            pixel_representation=pixrep,
            out=out[i],
            notes=notes if i == 0 else None,
        )
    return out


def _per_frame_transforms(ds: Dataset, n: int) -> list[tuple[float, float]]:
    """Rescale slope/intercept for each frame: top level, shared or per-frame functional groups."""

    def pair(item: Dataset | None) -> tuple[float, float] | None:
        if item is None or ("RescaleSlope" not in item and "RescaleIntercept" not in item):
            return None
        try:
            slope = float(item.get("RescaleSlope", 1.0) or 1.0)
            intercept = float(item.get("RescaleIntercept", 0.0) or 0.0)
        except (TypeError, ValueError):
            return None
        return (slope if slope != 0 else 1.0), intercept

    def transform_item(group: Dataset | None) -> Dataset | None:
        try:
            seq = group.get("PixelValueTransformationSequence") if group is not None else None
            return seq[0] if seq else None
        except Exception:
            return None

    default = pair(ds) or (1.0, 0.0)
    try:
        shared_seq = ds.get("SharedFunctionalGroupsSequence")
        shared = pair(transform_item(shared_seq[0] if shared_seq else None))
    except Exception:
        shared = None
    default = shared or default
    try:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    except Exception:
        per_frame = []
    if len(per_frame) != n:
        return [default] * n
    return [pair(transform_item(group)) or default for group in per_frame]


def _check_size(ds: Dataset, name: str) -> None:
    rows, cols = _int(ds, "Rows", 0), _int(ds, "Columns", 0)
    if rows <= 0 or cols <= 0:
        raise LoadError(name, f"invalid image size {rows} x {cols}")
    frames = max(_int(ds, "NumberOfFrames", 1), 1)
    samples = max(_int(ds, "SamplesPerPixel", 1), 1)
    bits = _int(ds, "BitsAllocated", 16)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR":
        samples, bits = 3, 16  # indices become RGB, of up to 16 bits a sample
    if frames > 1 and (reason := over_budget(f"an object of {frames} frames", frames, "slices")):
        raise LoadError(name, reason)
    size = (f"{frames} frames of " if frames > 1 else "") + f"{rows} x {cols}"
    decoded = decoded_bytes(rows, cols, frames, samples, bits)
    if reason := over_budget(f"{size} pixels decoded", decoded, "load_bytes"):
        raise LoadError(name, reason)


def _int(ds: Dataset, keyword: str, default: int) -> int:
    try:
        value = ds.get(keyword, default)
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default
