"""Fuzzing of every reader: mutated copies of valid files must load or be refused with a reason.

One test per reader (DICOM, PNG/JPEG/TIFF, ZIP, DICOMDIR). Each makes a few hundred copies of
valid files with a fixed seed, each with one mutation (bytes flipped, a truncation, a chunk
inserted or duplicated, a length field made huge or tiny), and opens each as the viewer does
(``discover`` then ``load_series``, compressed pixels in decoder worker processes). Every copy
must end as an image or as the project's ``Problem``/``LoadError`` with a one-line reason; any
other exception, or a case that takes seconds, is a defect (the case is printed to replay it).
The budgets are those of a 2 GiB machine, so a huge declared size is refused, never allocated.
"""

from __future__ import annotations

import io
import random
import struct
import time
import traceback
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

from tests.security import attack_inputs as attack
from viewer.io import LoadError, discover, load_series, to_display
from viewer.io.dicom_header import read_header
from viewer.io.dicom_writer import write_ct_series
from viewer.io.isolated_decode import DecoderPool
from viewer.resources import resource_path

SEED = 20250101
# Seconds one case may take (a decoder worker restart included); a hang is a defect.
CASE_SECONDS = 10.0


@dataclass(frozen=True)
class Source:
    """A valid file to mutate, with where its length fields are: ``(offset, width)`` pairs."""

    name: str
    data: bytes
    lengths: tuple[tuple[int, int], ...] = ()
    endian: str = "<"  # of the length fields: DICOM, ZIP and "II" TIFF little, PNG and JPEG big


@pytest.fixture
def pool(monkeypatch) -> Iterator[DecoderPool]:
    """Budgets of a 2 GiB machine (the workers inherit them) and decoders that give up quickly."""
    monkeypatch.setenv("SALIENCY_VIEWER_MEMORY", "2G")
    decoders = DecoderPool(workers=1, timeout_s=CASE_SECONDS / 2)
    yield decoders
    decoders.shutdown()


def mutate(rng: random.Random, source: Source) -> tuple[bytes, str]:
    """One mutation of ``source``, and its description (enough to replay it)."""
    data = bytearray(source.data)
    # Most structure (and most parsing) is near the start: mutate there two times out of three.
    span = len(data) if rng.random() < 0.34 else min(len(data), 2048)
    at = rng.randrange(max(1, span))
    kind = rng.choice(["flip", "truncate", "insert", "duplicate", "length", "length"])
    if kind == "length" and not source.lengths:
        kind = "flip"
    if kind == "flip":
        count = rng.choice([1, 2, 8, 32])
        for _ in range(count):
            data[rng.randrange(max(1, span))] ^= rng.randrange(1, 256)
        return bytes(data), f"flip {count} bytes"
    if kind == "truncate":
        return bytes(data[:at]), f"truncate at {at}"
    if kind == "insert":
        chunk = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 64, 1000])))
        return bytes(data[:at] + chunk + data[at:]), f"insert {len(chunk)} bytes at {at}"
    if kind == "duplicate":
        start = rng.randrange(len(data))
        chunk = data[start : start + rng.choice([8, 128, 4096])]
        return bytes(data[:at] + chunk + data[at:]), f"duplicate {len(chunk)} bytes from {start} at {at}"
    offset, width = rng.choice(source.lengths)
    top = (1 << (8 * width)) - 1
    value = rng.choice([0, 1, top, top - 15, top // 2, rng.randrange(top + 1)])
    fmt = {1: "B", 2: "H", 4: "I", 8: "Q"}[width]
    struct.pack_into(source.endian + fmt, data, offset, value)
    return bytes(data), f"length field at {offset} ({width} bytes) = {value}"


def check_reason(reason: str, case: str) -> None:
    assert reason and reason.strip(), f"{case}: an empty reason"
    assert "\n" not in reason, f"{case}: a reason of several lines: {reason!r}"
    assert "Traceback" not in reason, f"{case}: {reason}"


def open_all(paths: list[Path], pool: DecoderPool, case: str) -> tuple[int, list[str]]:
    """Open everything under ``paths`` as the viewer does; every outcome must be an image or a
    readable reason. Returns how many images opened, and the reasons."""
    found = discover(paths)
    reasons = [p.reason for p in found.problems]
    images = 0
    for series in found.series:
        try:
            image = load_series(series, pool=pool)
        except LoadError as exc:
            reasons.append(exc.reason)
            continue
        reasons += [p.reason for p in image.left_out]
        grey = to_display(image, image.n_frames // 2)
        assert grey.shape[:2] == (image.rows, image.columns), case
        images += 1
    for reason in reasons:
        check_reason(reason, case)
    return images, reasons


def fuzz(
    tmp_path: Path,
    pool: DecoderPool,
    sources: list[Source],
    cases: int,
    seed: int,
    write: Callable[[Path, str, bytes], list[Path]] | None = None,
) -> dict[str, int]:
    """``cases`` mutated copies of ``sources``; returns how many images opened, and in how many
    cases something was refused.
    ``write(folder, name, data)`` lays a case out on disk (default: the file alone)."""
    rng = random.Random(seed)
    failures: list[str] = []
    tally = {"images": 0, "refused": 0}
    for number in range(cases):
        source = sources[number % len(sources)]
        data, how = mutate(rng, source)
        case = f"case {number} (seed {seed}): {source.name}, {how}"
        folder = tmp_path / f"case{number}"
        folder.mkdir(parents=True)
        paths = write(folder, source.name, data) if write else [_write(folder / source.name, data)]
        start = time.monotonic()
        try:
            images, reasons = open_all(paths, pool, case)
        except Exception as exc:  # the defect this test is for: say which case, and how
            failures.append(f"{case}: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}")
            continue
        seconds = time.monotonic() - start
        if seconds > CASE_SECONDS:
            failures.append(f"{case}: took {seconds:.1f} s")
        tally["images"] += images
        tally["refused"] += bool(reasons)
    assert not failures, f"{len(failures)} of {cases} cases failed:\n" + "\n".join(failures[:5])
    return tally


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- DICOM ------------------------------------------------------------------------------------


# Image Pixel attributes whose values size the pixel data: Samples per Pixel, Rows, Columns,
# Bits Allocated, Bits Stored, High Bit, Pixel Representation, Planar Configuration.
_SIZE_TAGS = {(0x0028, e) for e in (0x0002, 0x0010, 0x0011, 0x0100, 0x0101, 0x0102, 0x0103, 0x0006)}


def dicom_lengths(data: bytes) -> tuple[tuple[int, int], ...]:
    """Offsets of the value-length fields of the top-level elements, file meta included, and of
    the values that size the pixels, walked as little endian (explicit VR where a VR is
    written, implicit where not) up to Pixel Data."""
    fields: list[tuple[int, int]] = []
    at = 132 if data[128:132] == b"DICM" else 0
    while at + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, at)
        vr = data[at + 4 : at + 6]
        if vr.isalpha() and vr.isupper():  # explicit VR
            if vr in (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UT", b"UN", b"UC", b"UR"):
                fields.append((at + 8, 4))
                length = struct.unpack_from("<I", data, at + 8)[0]
                at += 12
            else:
                fields.append((at + 6, 2))
                length = struct.unpack_from("<H", data, at + 6)[0]
                at += 8
        else:
            fields.append((at + 4, 4))
            length = struct.unpack_from("<I", data, at + 4)[0]
            at += 8
        if (group, element) in _SIZE_TAGS and length == 2 and at + 2 <= len(data):
            fields += [(at, 2)] * 4  # four times as likely as a length: they reach the decoders
        if length == 0xFFFFFFFF or group == 0x7FE0:
            break
        at += length
    return tuple(fields)


def dicom_sources(testdata) -> list[Source]:
    names = [
        "CT_small.dcm",  # explicit VR little endian
        "MR_small.dcm",
        "MR_small_implicit.dcm",
        "emri_small.dcm",  # 10 frames
        "rtdose.dcm",  # 15 frames of 32-bit dose
        "SC_rgb.dcm",  # colour
        "image_dfl.dcm",  # deflated
        "MR_small_RLE.dcm",  # compressed: a worker decodes it
    ]
    paths = [Path(testdata(name)) for name in names]
    paths.append(resource_path("samples", "dicom", "ct_0001", "CT0001.dcm"))  # JPEG 2000, bundled
    out = []
    for path in paths:
        data = path.read_bytes()
        out.append(Source(path.name, data, dicom_lengths(data)))
    return out


@pytest.mark.timeout(180)
def test_fuzzed_dicom_files_load_or_are_refused(tmp_path, pool, testdata):
    tally = fuzz(tmp_path, pool, dicom_sources(testdata), 600, SEED)
    assert tally["images"] > 60 and tally["refused"] > 60, tally  # both ways were exercised


@pytest.mark.timeout(180)
def test_a_fuzzed_slice_costs_its_series_at_most_that_slice(tmp_path, pool):
    """One slice of a four-slice CT series mutated (its position, size, orientation or pixels):
    the series is grouped, split or loaded with that slice left out, each with a reason."""
    rng = np.random.default_rng(SEED)
    template = tmp_path / "series"
    write_ct_series(np.rint(rng.normal(40, 20, (4, 24, 20))), template, spacing=(2.5, 0.7, 0.7))
    slices = sorted(template.iterdir())
    sources = [Source(path.name, path.read_bytes(), dicom_lengths(path.read_bytes())) for path in slices]

    def write(folder: Path, name: str, mutated: bytes) -> list[Path]:
        for path in slices:
            _write(folder / path.name, mutated if path.name == name else path.read_bytes())
        return [folder]

    tally = fuzz(tmp_path / "cases", pool, sources, 300, SEED + 5, write=write)
    assert tally["images"] > 100 and tally["refused"] > 60, tally


# --- PNG, JPEG, TIFF --------------------------------------------------------------------------


def _png_lengths(data: bytes) -> tuple[tuple[int, int], ...]:
    fields, at = [], 8
    while at + 8 <= len(data):
        fields.append((at, 4))
        length = struct.unpack_from(">I", data, at)[0]
        if data[at + 4 : at + 8] == b"IHDR":
            fields += [(at + 8, 4), (at + 12, 4)]  # width, height
        at += 12 + length
    return tuple(fields)


def _jpeg_lengths(data: bytes) -> tuple[tuple[int, int], ...]:
    fields, at = [], 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        fields.append((at + 2, 2))
        if marker in (0xC0, 0xC1, 0xC2):
            fields += [(at + 5, 2), (at + 7, 2)]  # height, width
        if marker == 0xDA:
            break
        at += 2 + struct.unpack_from(">H", data, at + 2)[0]
    return tuple(fields)


def _tiff_lengths(data: bytes) -> tuple[tuple[int, int], ...]:
    """Every IFD's entry count, each entry's count and value, and the next-IFD offsets."""
    endian = "<" if data[:2] == b"II" else ">"
    fields = [(4, 4)]
    at = struct.unpack_from(endian + "I", data, 4)[0]
    seen = set()
    while 0 < at < len(data) - 2 and at not in seen:
        seen.add(at)
        count = struct.unpack_from(endian + "H", data, at)[0]
        fields.append((at, 2))
        for k in range(count):
            entry = at + 2 + 12 * k
            if entry + 12 > len(data):
                break
            fields += [(entry + 4, 4), (entry + 8, 4)]
        following = at + 2 + 12 * count
        if following + 4 > len(data):
            break
        fields.append((following, 4))
        at = struct.unpack_from(endian + "I", data, following)[0]
    return tuple(fields)


def raster_sources() -> list[Source]:
    rng = np.random.default_rng(SEED)
    grey = (rng.random((48, 64)) * 255).astype(np.uint8)
    deep = (rng.random((40, 30)) * 65535).astype(np.uint16)
    colour = (rng.random((32, 40, 3)) * 255).astype(np.uint8)
    made = []

    def save(image: PILImage.Image, name: str, **options) -> None:
        buffer = io.BytesIO()
        image.save(buffer, **options)
        made.append((name, buffer.getvalue()))

    save(PILImage.fromarray(grey), "grey.png", format="PNG")
    save(PILImage.fromarray(deep), "deep.png", format="PNG")
    save(PILImage.fromarray(colour), "colour.png", format="PNG")
    save(PILImage.fromarray(grey), "grey.jpg", format="JPEG", quality=90)
    save(PILImage.fromarray(colour), "colour.jpg", format="JPEG", quality=90)
    pages = [PILImage.fromarray(np.roll(grey, k)) for k in range(3)]
    save(pages[0], "pages.tif", format="TIFF", save_all=True, append_images=pages[1:])
    save(PILImage.fromarray(deep), "deflate.tif", format="TIFF", compression="tiff_adobe_deflate")
    out = []
    for name, data in made:
        if name.endswith(".png"):
            out.append(Source(name, data, _png_lengths(data), ">"))
        elif name.endswith(".jpg"):
            out.append(Source(name, data, _jpeg_lengths(data), ">"))
        else:
            out.append(Source(name, data, _tiff_lengths(data), "<" if data[:2] == b"II" else ">"))
    return out


@pytest.mark.timeout(180)
def test_fuzzed_png_jpeg_and_tiff_files_load_or_are_refused(tmp_path, pool):
    tally = fuzz(tmp_path, pool, raster_sources(), 1000, SEED + 1)
    assert tally["images"] > 30 and tally["refused"] > 30, tally


# --- ZIP archives -----------------------------------------------------------------------------


def _zip_lengths(data: bytes) -> tuple[tuple[int, int], ...]:
    """Sizes, counts and offsets of every local header, central directory entry and the end
    record: what a reader trusts before it reads."""
    fields = []
    for signature, layout in (
        (b"PK\x03\x04", [(18, 4), (22, 4), (26, 2), (28, 2)]),  # compressed, size, name, extra
        (b"PK\x01\x02", [(20, 4), (24, 4), (28, 2), (30, 2), (42, 4)]),  # ..., local header offset
        (b"PK\x05\x06", [(8, 2), (10, 2), (12, 4), (16, 4)]),  # entries, directory size, offset
    ):
        at = data.find(signature)
        while at >= 0:
            fields += [(at + offset, width) for offset, width in layout if at + offset + width <= len(data)]
            at = data.find(signature, at + 4)
    return tuple(fields)


def zip_sources(testdata) -> list[Source]:
    out = []
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", method) as archive:
            archive.writestr("study/", b"")
            for name in ("CT_small.dcm", "MR_small.dcm", "emri_small.dcm"):
                archive.write(testdata(name), f"study/{name}")
            png = io.BytesIO()
            PILImage.fromarray(np.eye(16, dtype=np.uint8) * 255).save(png, format="PNG")
            archive.writestr("study/eye.png", png.getvalue())
        data = buffer.getvalue()
        out.append(Source(f"study{method}.zip", data, _zip_lengths(data)))
    return out


@pytest.mark.timeout(180)
def test_fuzzed_zip_archives_load_or_are_refused(tmp_path, pool, testdata):
    tally = fuzz(tmp_path, pool, zip_sources(testdata), 500, SEED + 2)
    assert tally["images"] > 30 and tally["refused"] > 30, tally


# --- DICOMDIR ---------------------------------------------------------------------------------

# File IDs a hostile disc may hold: each must be refused or missing, never opened outside.
NASTY_FILE_IDS = [
    ["..", "outside.dcm"],
    ["/", "etc", "passwd"],
    ["C:", "WINDOWS"],
    ["PT000000", "..", "..", "outside.dcm"],
    ["a/../../outside.dcm"],
    ["", "outside.dcm"],
    ["\0"],
    ["."],
    ["X" * 300],
    ["PT000000", "ST000000", "SE000000", "IM000000", "MORE"],
]


def _disc(tmp_path: Path) -> tuple[Path, bytes]:
    """A DICOMDIR of three CT slices (written once, the slices beside it) and its bytes."""
    folder = tmp_path / "template"
    sources = tmp_path / "sources"
    sources.mkdir()
    folder.mkdir()
    images = [
        attack.write_dicom(sources / f"{k}.dcm", 8, 8, series="disc", instance=k + 1, position=(0, 0, k))
        for k in range(3)
    ]
    dicomdir = attack.write_dicomdir(folder, images, [])
    return folder, dicomdir.read_bytes()


def _aimed(data: bytes, record: int, file_id: list[str]) -> bytes:
    """The DICOMDIR ``data`` with image record ``record`` aimed at ``file_id``."""
    ds = pydicom.dcmread(io.BytesIO(data))
    target = [r for r in ds.DirectoryRecordSequence if "ReferencedFileID" in r][record]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # none of them is a valid CS value
        target.ReferencedFileID = file_id
        buffer = io.BytesIO()
        ds.save_as(buffer)
    return buffer.getvalue()


@pytest.mark.timeout(180)
def test_fuzzed_dicomdirs_open_only_files_inside_their_folder(tmp_path, pool, monkeypatch):
    template, data = _disc(tmp_path)
    outside = attack.write_dicom(tmp_path / "outside.dcm", 8, 8, series="outside", patient="Other^Patient")
    sources = [Source("DICOMDIR", data, dicom_lengths(data))]
    for number, file_id in enumerate(NASTY_FILE_IDS):  # well-formed records that aim elsewhere
        aimed = _aimed(data, number % 3, file_id)
        sources.append(Source(f"DICOMDIR, record {number % 3} -> {file_id!r}", aimed, dicom_lengths(aimed)))
    opened: list[str] = []

    def spying(ref):
        opened.append(ref.path)
        return read_header(ref)

    monkeypatch.setattr("viewer.io.formats.dicom.read_header", spying)

    def write(folder: Path, _name: str, mutated: bytes) -> list[Path]:
        disc = folder / "cd"
        for path in template.rglob("*"):
            if path.is_file() and path.name != "DICOMDIR":
                target = disc / path.relative_to(template)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
        (disc / "DICOMDIR").write_bytes(mutated)
        return [disc / "DICOMDIR"]

    tally = fuzz(tmp_path / "cases", pool, sources, 400, SEED + 4, write=write)
    escaped = [p for p in opened if "/cd/" not in p.replace("\\", "/")]
    assert not escaped and str(outside) not in opened, escaped[:3]
    assert tally["images"] > 20 and tally["refused"] > 20, tally
