"""Corrupt, truncated and hostile files: each is reported by name, and the rest still opens.

Corrupted copies are made deterministically from real corpus files.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_fragments

from viewer.io import LoadError, discover, load_series, to_display
from viewer.io.isolated_decode import DecoderPool
from viewer.io.sources import FileRef

SOURCES = [
    "CT_small.dcm",  # explicit little endian
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline
    "JPGExtended.dcm",  # 12-bit JPEG
    "JPEG-LL.dcm",  # JPEG lossless
    "MR_small_jp2klossless.dcm",  # JPEG 2000
    "emri_small_jpeg_ls_lossless.dcm",  # JPEG-LS
    "MR_small_RLE.dcm",
    "image_dfl.dcm",  # deflated
    "emri_small.dcm",  # multi-frame
]


def _check_outcome(found, paths: list[str]) -> dict[str, str]:
    """Load everything; every path must end as an image or a named problem. Returns path -> outcome."""
    outcome = {p.path: "problem: " + p.reason for p in found.problems}
    for series in found.series:
        try:
            image = load_series(series)
            assert np.isfinite(to_display(image, image.n_frames // 2)).all()
            for path in series.paths:
                outcome[path] = "image"
            for problem in image.left_out:
                outcome[problem.path] = "problem: " + problem.reason
        except LoadError as exc:
            assert exc.reason
            for path in series.paths:
                outcome[path] = "problem: " + exc.reason
    for path in paths:
        assert path in outcome, f"{path} vanished without a word"
        assert "Traceback" not in outcome[path]
    return outcome


def _pixel_span(path: Path) -> tuple[int, int]:
    """Byte range of the pixel data (of its largest fragment when compressed)."""
    ds = pydicom.dcmread(path)
    data = path.read_bytes()
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        fragment = max(generate_fragments(ds.PixelData), key=len)
        start = data.find(bytes(fragment[:32]))
        return start, start + len(fragment)
    return len(data) - len(ds.PixelData), len(data)


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory, testdata) -> Path:
    folder = tmp_path_factory.mktemp("corrupted")
    rng = random.Random(2024)
    for name in SOURCES:
        source = Path(testdata(name))
        data = source.read_bytes()
        stem = source.stem
        for fraction in (0.05, 0.3, 0.6, 0.9, 0.999):
            (folder / f"{stem}_trunc{fraction}.dcm").write_bytes(data[: int(len(data) * fraction)])
        for k in range(4):
            flipped = bytearray(data)
            for _ in range(8):
                flipped[rng.randrange(132, min(len(data), 1500))] ^= 0xFF
            (folder / f"{stem}_header{k}.dcm").write_bytes(bytes(flipped))
        start, stop = _pixel_span(source)
        for k in range(3):
            garbage = bytearray(data)
            lo = start + (stop - start) // 4
            for _ in range(16):
                pos = rng.randrange(lo, stop - 8)
                garbage[pos : pos + 8] = bytes(rng.randrange(256) for _ in range(8))
            (folder / f"{stem}_pixels{k}.dcm").write_bytes(bytes(garbage))
        # An absurd element length: the first header element claims ~4 GB.
        absurd = bytearray(data)
        ds_start = data.find(b"\x08\x00", 132 + 12)
        if ds_start > 0:
            absurd[ds_start + 4 : ds_start + 8] = (0xFFFFFFF0).to_bytes(4, "little")
            (folder / f"{stem}_length.dcm").write_bytes(bytes(absurd))
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "notes.txt").write_text("radiologist's notes, not an image\n")
    (folder / "random.bin").write_bytes(bytes(rng.randrange(256) for _ in range(5000)))
    (folder / "fake_preamble.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 300)
    return folder


def test_every_corrupted_file_is_an_image_or_a_named_problem(corrupted):
    paths = sorted(str(p) for p in corrupted.iterdir())
    found = discover([corrupted])
    outcome = _check_outcome(found, paths)
    assert outcome[str(corrupted / "empty.dcm")] == "problem: empty file"
    assert outcome[str(corrupted / "notes.txt")].startswith("problem: not a DICOM file")
    # Most truncations are caught; a copy cut inside trailing padding may still be whole.
    truncated = [p for p in paths if "_trunc0.3" in p or "_trunc0.6" in p]
    assert all(outcome[p].startswith("problem") for p in truncated), {p: outcome[p] for p in truncated}


def test_good_files_still_open_beside_bad_ones(corrupted, testdata, tmp_path):
    # Instances unrelated to the corrupted copies (a twin with the same SOP Instance UID is a duplicate).
    good = [testdata("693_J2KR.dcm"), testdata("RG3_J2KI.dcm"), testdata("US1_J2KR.dcm")]
    found = discover([corrupted, *good])
    outcome = _check_outcome(found, good)
    assert all(outcome[g] == "image" for g in good), {g: outcome[g] for g in good}


def _big_compressed(testdata) -> FileRef:
    return FileRef(testdata("RG1_J2KR.dcm"))  # ~1 s to decode: long enough to interrupt


def test_decoder_crash_costs_only_that_file(testdata):
    """A decoder that aborts (as libjpeg does on some corrupt streams) takes down its worker only."""
    pool = DecoderPool(workers=1)
    victim = _big_compressed(testdata)
    others = [FileRef(testdata("MR_small_jp2klossless.dcm")), FileRef(testdata("SC_rgb_jpeg_dcmtk.dcm"))]
    killed = []

    def abort_worker_mid_decode():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            workers = [w for w in pool._workers if w.job and w.job[1] == victim]
            if workers:
                time.sleep(0.1)  # let it get into the decoder
                os.kill(workers[0].process.pid, signal.SIGABRT)
                killed.append(workers[0].process.pid)
                return
            time.sleep(0.005)

    killer = threading.Thread(target=abort_worker_mid_decode)
    killer.start()
    results = {}
    pool.decode([victim, *others], lambda i, r: results.__setitem__(i, r))
    killer.join()
    pool.shutdown()
    assert killed
    assert "crashed (SIGABRT)" in results[0].reason
    assert results[0].path == str(victim)
    assert results[1].pixels.shape[0] == 1
    assert results[2].photometric == "RGB"


def test_hanging_decoder_is_stopped(testdata):
    pool = DecoderPool(workers=1, timeout_s=0.05)
    result = pool.decode_one(_big_compressed(testdata))
    assert "longer than" in result.reason
    pool.timeout_s = 60
    good = pool.decode_one(FileRef(testdata("MR_small_jp2klossless.dcm")))
    pool.shutdown()
    assert good.pixels.shape == (1, 64, 64)


def test_worker_pool_restarts_after_crash_between_jobs(testdata):
    pool = DecoderPool(workers=1)
    ref = FileRef(testdata("MR_small_jp2klossless.dcm"))
    first = pool.decode_one(ref)
    for worker in pool._workers:
        worker.process.kill()
        worker.process.wait()
    second = pool.decode_one(ref)
    pool.shutdown()
    np.testing.assert_array_equal(first.pixels, second.pixels)
