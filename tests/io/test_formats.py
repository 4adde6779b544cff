"""Readers by format: the surest sniff wins, and a new format is one reader class."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from viewer.io import discover, formats
from viewer.io.image import FrameInfo, Geometry, Identity, Image, Window
from viewer.io.loader import load_series
from viewer.io.series import SeriesInfo
from viewer.io.sources import FileRef


def test_a_part10_preamble_wins_over_the_tiff_header_it_may_also_be():
    head = b"II*\x00" + bytes(124) + b"DICM"
    assert formats.reader_for_head(head).kind == "dicom"
    assert formats.reader_for_head(b"II*\x00" + bytes(128)).kind == "raster"
    assert formats.reader_for_head(b"\x89PNG\r\n\x1a\n" + bytes(124)).kind == "raster"
    assert formats.reader_for_head(b"hello world" + bytes(121)) is None


def test_the_open_dialog_lists_every_readers_patterns():
    text = formats.file_patterns()
    for pattern in ("*.dcm", "DICOMDIR", "*.png", "*.tiff", "*.zip"):
        assert pattern in text


@dataclass
class PgmRecord:
    """A binary PGM (P5) file, 8 bits: enough of a format to show what a reader declares."""

    ref: FileRef
    rows: int
    columns: int
    frames: int = 1
    photometric: str = "MONOCHROME2"
    syntax_name: str = "PGM"
    spacing: tuple[float, float] = (1.0, 1.0)
    spacing_source: str = "none"
    windows: tuple = ()
    warnings: tuple = ()


class PgmReader:
    kind = "pgm"
    title = "PGM image"
    patterns = ("*.pgm",)

    @staticmethod
    def sniff(head: bytes) -> int:
        return 50 if head.startswith(b"P5\n") else 0

    @staticmethod
    def read(ref, head):
        columns, rows = head.split(b"\n")[1].split()
        return PgmRecord(ref, int(rows), int(columns))

    @staticmethod
    def group(records, _problems):
        return [SeriesInfo(Identity(series_description=r.ref.name), "pgm", records=[r]) for r in records]

    @staticmethod
    def load(series, **_options):
        record = series.records[0]
        data = record.ref.read_bytes()
        pixels = np.frombuffer(data[-record.rows * record.columns :], np.uint8).reshape(
            record.rows, record.columns
        )
        window = Window(127.5, 256.0)
        return Image(
            pixels=pixels.astype(np.float32)[None],
            photometric="MONOCHROME2",
            geometry=Geometry(),
            identity=series.identity,
            frames=(FrameInfo(str(record.ref), 0),),
            windows=(window,),
            default_window=window,
            kind="raster",
        )


def test_a_new_format_is_one_reader(tmp_path, monkeypatch):
    pixels = np.arange(12 * 20, dtype=np.uint8).reshape(12, 20)
    (tmp_path / "scan.pgm").write_bytes(b"P5\n20 12\n255\n" + pixels.tobytes())
    (tmp_path / "notes.txt").write_text("not an image")
    monkeypatch.setattr(formats, "READERS", (*formats.READERS, PgmReader()))
    found = discover([tmp_path])
    assert [s.kind for s in found.series] == ["pgm"] and len(found.problems) == 1
    series = found.series[0]
    assert (series.rows, series.columns, series.n_frames, series.transfer_syntax) == (12, 20, 1, "PGM")
    image = load_series(series)
    assert np.array_equal(image.pixels[0], pixels)
    assert "*.pgm" in formats.file_patterns()


@pytest.mark.parametrize("kind", ["dicom", "raster"])
def test_every_bundled_reader_declares_the_protocol(kind):
    reader = formats.reader(kind)
    for name in ("kind", "title", "patterns", "sniff", "read", "group", "load"):
        assert hasattr(reader, name)


def test_discovery_inflates_no_zip_member_whole(tmp_path, monkeypatch):
    """Headers are streamed from the archive: only decoding reads a member's bytes."""
    import zipfile

    from viewer.resources import resources_root

    dicom = resources_root() / "samples" / "dicom"
    archive = tmp_path / "studies.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(dicom.rglob("*.dcm"))[:6]:
            z.write(path, path.relative_to(dicom))
    reads = []
    original = FileRef.read_bytes
    monkeypatch.setattr(FileRef, "read_bytes", lambda self: (reads.append(self.member), original(self))[1])
    found = discover([archive])
    assert found.series and not found.problems and reads == []
    image = load_series(found.series[0])
    assert image.n_frames == 6 and not image.left_out
