"""Small files that declare huge or hostile contents, built on the spot for the security tests.

Each builder writes a few kilobytes (or a sparse file) that a naive reader would turn into
gigabytes of memory, minutes of work, or a read outside the folder the user opened. They are
written byte by byte where pydicom or Pillow would refuse to produce them (a Pixel Data length
that the file only holds as a hole, a TIFF whose fifty pages share one compressed strip).
"""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

_PREFIX = "1.2.826.0.1.3680043.10.1514.99."


def uid(*entropy: object) -> str:
    """A deterministic UID (same inputs, same UID), so that files of one series group together."""
    return generate_uid(prefix=_PREFIX, entropy_srcs=[str(e) for e in entropy])


def dicom_header(
    rows: int,
    cols: int,
    *,
    bits: int = 16,
    frames: int = 1,
    modality: str = "CT",
    series: str = "attack",
    instance: int = 1,
    position: Sequence[float] | None = None,
    patient: str = "Attack^Input",
    sop_uid: str | None = None,
) -> bytes:
    """A Part 10 file up to, not including, its Pixel Data element (explicit VR little endian).
    Positions are written 12 characters wide, so that files can be made from one template."""
    sop_uid = sop_uid or uid(series, instance)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = patient
    ds.PatientID = patient.replace("^", "")
    ds.StudyInstanceUID = uid("study", series)
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20250101", "120000", "1"
    ds.SeriesInstanceUID = uid("series", series)
    ds.SeriesNumber = 1
    ds.Modality = modality
    ds.InstanceNumber = instance
    if position is not None:
        ds.ImagePositionPatient = [f"{v:012.4f}" for v in position]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [1, 1]
        ds.SliceThickness = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def pixel_element(length: int) -> bytes:
    """The header of a Pixel Data element (OW) of ``length`` bytes."""
    return b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", length)


def declared_bytes(rows: int, cols: int, bits: int = 16, frames: int = 1) -> int:
    return rows * cols * frames * bits // 8


def write_dicom(path: Path, rows: int, cols: int, pixels: bytes | None = None, **header) -> Path:
    """A complete, small DICOM file (zeros unless ``pixels`` is given)."""
    length = declared_bytes(rows, cols, header.get("bits", 16), header.get("frames", 1))
    data = pixels if pixels is not None else bytes(length)
    path.write_bytes(dicom_header(rows, cols, **header) + pixel_element(len(data)) + data)
    return path


def write_sparse_dicom(path: Path, rows: int, cols: int, *, bits: int = 16, frames: int = 1) -> Path:
    """A DICOM file whose pixel data is a hole: a few kilobytes on disk, any size declared."""
    head = dicom_header(rows, cols, bits=bits, frames=frames, series="sparse")
    length = declared_bytes(rows, cols, bits, frames)
    with open(path, "wb") as f:
        f.write(head + pixel_element(length))
        f.truncate(len(head) + 12 + length)
    return path


def write_zip_bomb(path: Path, rows: int, cols: int, *, frames: int = 1) -> Path:
    """A ZIP holding one DICOM of ``rows x cols x frames`` 16-bit zeros, deflated (about 1000:1:
    a 1 GiB member in under 5 MB)."""
    total = declared_bytes(rows, cols, 16, frames)
    head = dicom_header(rows, cols, frames=frames, series="zipbomb") + pixel_element(total)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("study/bomb.dcm", "w", force_zip64=True) as member,
    ):
        member.write(head)
        chunk = bytes(1 << 22)
        left = total
        while left:
            member.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
    return path


def lie_about_size(path: Path, size: int) -> Path:
    """Make the central directory say that every member (under 4 GiB) inflates to ``size``
    bytes: a reader trusting ``ZipInfo.file_size`` is fooled, zipfile's stream stops there."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        if struct.unpack_from("<I", data, at + 24)[0] == 0xFFFFFFFF:
            raise ValueError("a ZIP64 member: its size lives in the extra field")
        struct.pack_into("<I", data, at + 24, size)
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))
    return path


def write_tiff_bomb(path: Path, pages: int, width: int, height: int) -> Path:
    """A grey 8-bit TIFF of ``pages`` pages of ``width x height`` zeros that all point at one
    deflated strip: a few megabytes for gigabytes of pixels."""
    strip = zlib.compressobj(9)
    row = bytes(width)
    chunks = [strip.compress(row) for _ in range(height)]
    data = b"".join(chunks) + strip.flush()
    out = bytearray(b"II*\x00" + struct.pack("<I", 8 + len(data)))
    strip_at = 8
    out += data
    entries = [
        (256, 4, 1, width),  # ImageWidth, LONG
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 8),  # Compression: deflate
        (262, 3, 1, 1),  # PhotometricInterpretation: black is zero
        (273, 4, 1, strip_at),  # StripOffsets
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, len(data)),  # StripByteCounts
    ]
    for page in range(pages):
        ifd_at = len(out)
        next_at = ifd_at + 2 + 12 * len(entries) + 4
        out += struct.pack("<H", len(entries))
        for tag, kind, count, value in entries:
            packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
            out += struct.pack("<HHI", tag, kind, count) + packed
        out += struct.pack("<I", next_at if page < pages - 1 else 0)
    path.write_bytes(bytes(out))
    return path


def write_slices(folder: Path, positions: Sequence[float], size: int = 1, series: str = "slices") -> Path:
    """One small CT file per position along z (a series of ``size x size`` slices), spliced from
    one template: 5,000 files in a fraction of a second, where pydicom takes seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    marks = {"uid": "9" * 10, "z": "7777777.7777", "number": "88888"}
    head = dicom_header(
        size,
        size,
        series=series,
        instance=int(marks["number"]),
        position=(0.0, 0.0, float(marks["z"])),
        sop_uid=_PREFIX + marks["uid"],
    )
    pixels = np.zeros((size, size), np.uint16).tobytes()
    template = head + pixel_element(len(pixels)) + pixels
    spans = []  # (start, end, key) of every placeholder, in file order
    for key, mark in marks.items():
        at = template.find(mark.encode())
        while at >= 0:
            spans.append((at, at + len(mark), key))
            at = template.find(mark.encode(), at + len(mark))
    spans.sort()
    for k, z in enumerate(positions):
        values = {"uid": f"1{k:09d}", "z": f"{z:012.4f}", "number": f"{k + 1:05d}"}
        parts, last = [], 0
        for start, end, key in spans:
            parts += [template[last:start], values[key].encode()]
            last = end
        (folder / f"IM{k:05d}.dcm").write_bytes(b"".join(parts) + template[last:])
    return folder


def write_dicomdir(folder: Path, images: Sequence[Path], file_ids: Sequence[Sequence[str] | None]) -> Path:
    """A DICOMDIR in ``folder`` for ``images`` (copied in), whose records then say ``file_ids``
    instead of where the images are: ``..`` or an absolute path reaches outside the folder."""
    from pydicom.fileset import FileSet

    fileset = FileSet()
    for image in images:
        fileset.add(pydicom.dcmread(image))
    fileset.write(folder)
    dicomdir = folder / "DICOMDIR"
    ds = pydicom.dcmread(dicomdir)
    referencing = [r for r in ds.DirectoryRecordSequence if "ReferencedFileID" in r]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ".." and "/" are not valid CS values, which is the point
        for record, file_id in zip(referencing, file_ids, strict=False):
            if file_id:  # None or () keeps the record as written
                record.ReferencedFileID = list(file_id) if len(file_id) > 1 else file_id[0]
        ds.save_as(dicomdir)
    return dicomdir
