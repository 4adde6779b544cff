"""One study holding CT, CR, DX, MR and a multi-frame Enhanced MR in every transfer syntax the
viewer decodes that can be made here, for the retrieval tests (``test_conformance``).

How each syntax is made, from small uncompressed originals (pydicom's ``CT_small``, ``MR_small``
and ``emri_small``; the bundled chest film reduced to 256 x 256 as CR, and an 8-bit copy as DX):

- Explicit VR Little Endian: the original; Implicit VR Little Endian, Deflated Explicit VR Little
  Endian and Explicit VR Big Endian (pixel bytes swapped): written by pydicom.
- RLE Lossless, JPEG-LS Lossless and Near-Lossless (pyjpegls), JPEG 2000 Lossless and lossy
  (pylibjpeg-openjpeg): pydicom's encoders.
- JPEG Baseline: the 8-bit DX through Pillow's JPEG encoder (pydicom has none).
- Ready-made, for what nothing here encodes (pydicom-data): JPEG Lossless SV1 (``bad_sequence``,
  a CT; ``JPGLosslessP14SV1_1s_1f_8b``, an ultrasound), JPEG Lossless Process 14 (the same CT
  labelled 1.2.840.10008.1.2.4.57, which allows selection value 1 among others: PS3.5 A.4.1),
  JPEG Extended 12-bit (``JPGExtended``, a secondary capture) and a multi-frame in JPEG Baseline
  (``examples_ybr_color``, 30 ultrasound frames).
- Not covered: HTJ2K (OpenJPEG decodes it but does not encode it, and pydicom-data has none).

Each copy gets a new SOP Instance UID, the study's UIDs, one series per kind of object, and its own
Instance Number and position, so the copies of one image make a stack.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom import Dataset, uid
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate

from viewer.cli.info import sample_studies

LOSSLESS = (
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
    uid.RLELossless,
    uid.JPEGLSLossless,
    uid.JPEG2000Lossless,
)
LOSSY = (uid.JPEGLSNearLossless, uid.JPEG2000)


@dataclass(frozen=True)
class Made:
    path: Path
    kind: str  # the series: CT, CR, DX, MR, EMR (multi-frame), or the ready-made file's name
    sop_class: str
    syntax: str
    original: np.ndarray | None  # the pixels a lossless syntax must give back; None: lossy


def make_study(folder: Path) -> list[Made]:
    folder.mkdir(parents=True, exist_ok=True)
    study = uid.generate_uid()
    sources = {
        "CT": _read(get_testdata_file("CT_small.dcm")),
        "CR": _reduced_film(),
        "MR": _read(get_testdata_file("MR_small.dcm")),
        "EMR": _read(get_testdata_file("emri_small.dcm")),
    }
    sources["DX"] = _eight_bit_dx(sources["CR"])
    made: list[Made] = []
    for number, (kind, source) in enumerate(sources.items(), start=1):
        series = uid.generate_uid()
        original = source.pixel_array.copy()
        syntaxes = [*LOSSLESS, *LOSSY] + ([uid.JPEGBaseline8Bit] if kind == "DX" else [])
        for index, syntax in enumerate(syntaxes, start=1):
            ds = _copy(source, study, series, number, index)
            _encode(ds, syntax)
            path = folder / f"{kind}-{index:02d}.dcm"
            _write(ds, path, syntax)
            made.append(
                Made(path, kind, str(ds.SOPClassUID), str(syntax), original if syntax in LOSSLESS else None)
            )
    ready = [
        ("bad_sequence.dcm", None, True),
        ("bad_sequence.dcm", uid.JPEGLossless, True),
        ("JPGLosslessP14SV1_1s_1f_8b.dcm", None, True),
        ("JPGExtended.dcm", None, False),
        ("examples_ybr_color.dcm", None, False),
    ]
    for number, (name, relabel, lossless) in enumerate(ready, start=len(sources) + 1):
        source = _read(get_testdata_file(name))
        original = source.pixel_array.copy() if lossless else None
        with warnings.catch_warnings():  # some of these files hold a hex digest in a UI element
            warnings.simplefilter("ignore", UserWarning)
            ds = _copy(source, study, uid.generate_uid(), number, 1)
        if relabel:
            ds.file_meta.TransferSyntaxUID = relabel
        path = folder / f"ready-{number:02d}-{Path(name).stem}.dcm"
        _write(ds, path, ds.file_meta.TransferSyntaxUID)
        made.append(
            Made(path, Path(name).stem, str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID), original)
        )
    return made


def _read(path) -> Dataset:
    ds = pydicom.dcmread(path)
    ds.PatientName, ds.PatientID = "Conformance^Test", "CONFORMANCE"
    return ds


def _reduced_film() -> Dataset:
    """The bundled chest film (CR, JPEG 2000) as a 256 x 256 uncompressed CR."""
    ds = _read(sample_studies() / "cxr_0001.dcm")
    pixels = ds.pixel_array[::4, ::4].copy()
    ds.decompress()
    ds.Rows, ds.Columns = pixels.shape
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword in ds:
            ds[keyword].value = [float(v) * 4 for v in ds[keyword].value]
    ds.PixelData = pixels.tobytes()
    return ds


def _eight_bit_dx(cr: Dataset) -> Dataset:
    ds = _copy(cr, cr.StudyInstanceUID, cr.SeriesInstanceUID, 1, 1)
    stored = cr.pixel_array.astype(np.float64)
    pixels = np.round(255 * (stored - stored.min()) / max(1.0, np.ptp(stored))).astype(np.uint8)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = uid.DigitalXRayImageStorageForPresentation
    ds.Modality = "DX"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.WindowCenter, ds.WindowWidth = 128, 256
    for keyword in ("RescaleSlope", "RescaleIntercept", "RescaleType", "SmallestImagePixelValue",
                    "LargestImagePixelValue"):  # fmt: skip
        if keyword in ds:
            del ds[keyword]
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OB"
    return ds


def _copy(source: Dataset, study: str, series: str, series_number: int, index: int) -> Dataset:
    ds = pydicom.dcmread(io.BytesIO(_bytes(source)))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SeriesNumber = study, series, series_number
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    ds.InstanceNumber = index
    if "ImagePositionPatient" in ds:
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 5.0 * index]
    return ds


def _bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _encode(ds: Dataset, syntax: str) -> None:
    if syntax in (uid.RLELossless, uid.JPEGLSLossless, uid.JPEG2000Lossless):
        ds.compress(syntax)
    elif syntax == uid.JPEGLSNearLossless:
        ds.compress(syntax, jls_error=2)
    elif syntax == uid.JPEG2000:
        ds.compress(syntax, j2k_cr=[10])
    elif syntax == uid.JPEGBaseline8Bit:
        from PIL import Image

        frame = io.BytesIO()
        Image.fromarray(ds.pixel_array).save(frame, format="JPEG", quality=90)
        ds.PixelData = encapsulate([frame.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
    elif syntax == uid.ExplicitVRBigEndian and ds.BitsAllocated > 8:
        ds.PixelData = np.frombuffer(ds.PixelData, dtype=f"<u{ds.BitsAllocated // 8}").byteswap().tobytes()


def _write(ds: Dataset, path: Path, syntax: str) -> None:
    from pydicom.filewriter import dcmwrite

    syntax = uid.UID(syntax)
    ds.file_meta.TransferSyntaxUID = syntax
    # pydicom writes big endian only when forced (the pixel bytes are swapped above); the dataset,
    # read from a file, has its preamble and meta to write.
    big = syntax == uid.ExplicitVRBigEndian
    dcmwrite(path, ds, implicit_vr=syntax.is_implicit_VR, little_endian=syntax.is_little_endian,
             enforce_file_format=not big, force_encoding=big)  # fmt: skip
