"""Small inputs that would take all memory or time, and DICOMDIRs that point outside their folder.

Each case builds its input here and opens it as a user would: the command line in a capped
subprocess (``harness.run_cli``), or the readers in process where a subprocess is overkill. Each
must be refused with a reason naming the file and the budget, or open within a small budget,
while the legitimate files beside it still open.

The budgets derive from the machine's memory (``viewer.io.budgets``). The command-line cases pin
that memory to the 24 GiB of the machine the attacks were measured on (``SALIENCY_VIEWER_MEMORY``),
so the same inputs are refused on a CI machine of any size. Measured there before the budgets:
the ZIP bomb 9.4 GB, the sparse file 8.45 GB, the TIFF ~30 GB, 5,000 slices 10.4 GB and 199 s.
"""

from __future__ import annotations

import os
import shutil
import time
import tracemalloc
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.security import attack_inputs as attack
from tests.security.harness import HANG_S, assert_clean, run_cli
from viewer.inference.manifest import InputSpec
from viewer.inference.volume import _resize_axis, _resize_window, prepare_volume
from viewer.io import LoadError, discover, load_series
from viewer.io.budgets import Budgets, budgets, machine_memory
from viewer.io.dicom_header import read_header
from viewer.io.dicom_writer import write_radiograph
from viewer.io.dicomdir import referenced_files
from viewer.io.mpr import Reformat
from viewer.io.series import SeriesInfo
from viewer.io.sources import FileRef
from viewer.resources import resource_path

GIB = 1024**3
ON_24_GIB = {**os.environ, "SALIENCY_VIEWER_MEMORY": "24G"}
PEAK = 2_500_000_000  # bytes of resident memory a refused bomb may cost, imports and model included


@pytest.fixture(scope="module")
def attacks(tmp_path_factory) -> Path:
    """``inputs/``: one of each memory and time bomb, and two small legitimate series;
    ``cd/DICOMDIR``: a disc whose records point at another patient's study and /etc/passwd."""
    root = tmp_path_factory.mktemp("attacks")
    inputs = root / "inputs"
    inputs.mkdir()
    attack.write_zip_bomb(inputs / "zipbomb.zip", 16384, 32768)  # a 1 GiB DICOM in 4.7 MB
    liar = shutil.copy(inputs / "zipbomb.zip", inputs / "liar.zip")
    attack.lie_about_size(Path(liar), 4096)  # the same member, its directory saying 4 KiB
    attack.write_sparse_dicom(inputs / "sparse.dcm", 32768, 32768)  # 2 GiB declared, 4 KB on disk
    attack.write_tiff_bomb(inputs / "pages.tif", 50, 12000, 12000)  # 50 pages sharing one strip
    attack.write_slices(inputs / "tiny", [float(k) for k in range(5000)])  # 5,000 slices of 1 x 1
    attack.write_slices(inputs / "far", [0.0, 0.01, 0.02, 0.03, 50000.0], size=16, series="far")
    attack.write_dicom(inputs / "legit.dcm", 64, 64, series="legit", position=(0.0, 0.0, 0.0))

    (root / "victim").mkdir()
    attack.write_dicom(root / "victim" / "OTHER.dcm", 8, 8, series="victim", patient="Other^Patient")
    sources = root / "disc"
    sources.mkdir()
    images = [
        attack.write_dicom(sources / f"{k}.dcm", 8, 8, series="disc", instance=k + 1, position=(0, 0, k))
        for k in range(4)
    ]
    (root / "cd").mkdir()
    attack.write_dicomdir(
        root / "cd",
        images,
        [None, ["..", "victim", "OTHER.dcm"], ["/etc/passwd"], ["..", "..", "..", "..", "etc", "passwd"]],
    )
    return root


def _line(outcome, *words: str) -> str:
    lines = [line for line in outcome.output.splitlines() if all(w.lower() in line.lower() for w in words)]
    assert lines, f"no line names {words}\n{outcome.describe()}"
    return lines[0]


def test_explain_refuses_every_bomb_and_explains_the_rest(attacks, tmp_path, sentinel):
    out = tmp_path / "out"
    args = [str(attacks / "inputs"), str(attacks / "cd" / "DICOMDIR")]
    outcome = run_cli(
        ["explain", *args, "--model", "ct_resnet18", "--methods", "gradcam", "--out", str(out), "--quiet"],
        env=ON_24_GIB,
        cwd=sentinel,  # a stray relative write would land here
        timeout=150,
    )
    assert_clean(outcome, max_seconds=90, max_rss=PEAK)
    assert outcome.returncode == 0, outcome.describe()
    _line(outcome, "zipbomb.zip!/study/bomb.dcm", "2.15 GB", "budget", "SALIENCY_VIEWER_LOAD_BYTES")
    _line(outcome, "liar.zip!/study/bomb.dcm", "CRC")  # zipfile stops at the size it was told
    _line(outcome, "sparse.dcm", "4.29 GB", "budget", "per file")
    _line(outcome, "pages.tif", "50 pages of 12000 x 12000", "budget")
    _line(outcome, "IM00000.dcm", "series of 5000 slices", "budget of 3072 slices", "SALIENCY_VIEWER_SLICES")
    for said in ("..\\victim\\OTHER.dcm", "/etc/passwd", "..\\..\\..\\..\\etc\\passwd"):
        _line(outcome, "DICOMDIR", said, "outside the DICOMDIR's folder")
    explained = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(explained) == 3, explained  # the two legitimate series and the disc's one image
    written = " ".join(p.read_text(errors="replace") for p in out.rglob("*.json"))
    assert "Other^Patient" not in written and "OTHER.dcm" not in outcome.stdout


def test_info_lists_the_disc_without_what_lies_outside_it(attacks):
    outcome = run_cli(["info", str(attacks / "cd" / "DICOMDIR"), "--json"], env=ON_24_GIB, timeout=60)
    assert_clean(outcome, max_seconds=30, max_rss=500_000_000)
    assert outcome.returncode == 0
    assert "Other^Patient" not in outcome.stdout and "passwd" in outcome.stdout  # named, not read
    assert outcome.stdout.count("outside the DICOMDIR's folder") == 3


# --- the budgets themselves -------------------------------------------------------------------


def test_budgets_derive_from_memory_and_the_environment(monkeypatch):
    for name in [k for k in os.environ if k.startswith("SALIENCY_VIEWER_")]:
        monkeypatch.delenv(name)
    on_24 = Budgets.derive(24 * GIB)
    assert (on_24.load_bytes, on_24.study_bytes, on_24.grid_bytes) == (1.5 * GIB, 3 * GIB, 1.5 * GIB)
    assert (on_24.slices, on_24.pages, on_24.member_bytes) == (3072, 3072, 1.5 * GIB)
    small = Budgets.derive(1 * GIB)  # floors: a small laptop still opens a 512 x 512 x 300 CT
    assert small.study_bytes >= 512 * 512 * 300 * 4 and small.slices >= 512
    assert budgets().memory == machine_memory() > 0

    monkeypatch.setenv("SALIENCY_VIEWER_MEMORY", "24G")
    assert budgets() == on_24
    monkeypatch.setenv("SALIENCY_VIEWER_SLICES", "100")
    monkeypatch.setenv("SALIENCY_VIEWER_LOAD_BYTES", "1.5M")
    monkeypatch.setenv("SALIENCY_VIEWER_GRID_BYTES", "a lot")  # not a size: ignored
    assert budgets() == replace(on_24, slices=100, load_bytes=int(1.5 * 1024**2))
    described = budgets().describe()
    assert "slices: 100 slices per series (SALIENCY_VIEWER_SLICES)" in described
    assert "SALIENCY_VIEWER_MEMBER_BYTES" in described


# --- ZIP archives -----------------------------------------------------------------------------


def test_a_zip_of_20000_members_lists_in_seconds_opening_it_once(tmp_path, monkeypatch):
    """Each member once reopened the archive (its whole central directory): 4,000 ten-byte members
    took 37 s and 20,000 did not list in 120 s."""
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for k in range(20_000):
            zf.writestr(f"m/{k:05d}.dcm", b"0123456789")
    opened = []

    class Counting(zipfile.ZipFile):
        def __init__(self, *args, **kwargs):
            opened.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr("viewer.io.archives.zipfile.ZipFile", Counting)
    start = time.monotonic()
    found = discover([archive])
    assert time.monotonic() - start < HANG_S
    assert found.files_examined == 20_000 and len(found.problems) == 20_000
    assert len(opened) == 1


def test_a_member_beyond_the_budget_is_never_inflated(tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_VIEWER_MEMBER_BYTES", "1M")
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.dcm", bytes(2 * 1024**2))
        zf.writestr("small.dcm", bytes(1000))
    found = discover([archive])
    reasons = {p.path: p.reason for p in found.problems}
    assert "beyond the budget of 1.05 MB per ZIP member" in reasons[f"{archive}!/big.dcm"]
    tracemalloc.start()
    try:
        with pytest.raises(LoadError, match="per ZIP member"):
            FileRef(str(archive), "big.dcm").read_bytes()  # a reference made by hand is held too
        assert tracemalloc.get_traced_memory()[1] < 512 * 1024
    finally:
        tracemalloc.stop()


def test_a_dicomdir_in_a_zip_is_held_to_its_folder(tmp_path):
    images = [attack.write_dicom(tmp_path / f"{k}.dcm", 8, 8, series="z", instance=k + 1) for k in range(3)]
    (tmp_path / "cd").mkdir()
    attack.write_dicomdir(tmp_path / "cd", images, [None, ["..", "OTHER", "IMG"], ["A:", "IMG"]])
    archive = tmp_path / "disc.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in (tmp_path / "cd").rglob("*"):
            if path.is_file():
                zf.write(path, "disc/" + path.relative_to(tmp_path / "cd").as_posix())
        zf.write(images[1], "OTHER/IMG")  # another study in the same archive, outside disc/
    refs, problems = referenced_files(FileRef(str(archive), "disc/DICOMDIR"))
    assert [r.member for r in refs] == ["disc/PT000000/ST000000/SE000000/IM000000"]
    assert [p.reason.split(",")[0] for p in problems] == [
        "a record refers to ..\\OTHER\\IMG",
        "a record refers to A:\\IMG",
    ]
    # Opening the archive opens its members, and says the same of the DICOMDIR's records.
    reasons = [p.reason for p in discover([archive]).problems]
    assert sum("outside the DICOMDIR's folder" in r for r in reasons) == 2


def test_a_link_inside_the_disc_that_leads_out_is_refused(tmp_path):
    images = [attack.write_dicom(tmp_path / f"{k}.dcm", 8, 8, series="l", instance=k + 1) for k in range(2)]
    (tmp_path / "cd").mkdir()
    dicomdir = attack.write_dicomdir(tmp_path / "cd", images, [None, ["LEAK"]])
    attack.write_dicom(tmp_path / "secret.dcm", 8, 8, series="secret", patient="Other^Patient")
    (tmp_path / "cd" / "LEAK").symlink_to(tmp_path / "secret.dcm")
    found = discover([dicomdir])
    assert [s.identity.patient_name for s in found.series] == ["Attack^Input"]
    assert any("LEAK, outside the DICOMDIR's folder" in p.reason for p in found.problems)


# --- pixels -----------------------------------------------------------------------------------


def test_a_series_made_by_hand_is_held_to_the_budgets_before_allocating(attacks, monkeypatch):
    """Discovery refuses the sparse file; a series built without it (a PACS cache, a script)
    meets the same budgets in the loader, before the 4 GB output exists."""
    monkeypatch.setenv("SALIENCY_VIEWER_MEMORY", "24G")
    record = read_header(FileRef(str(attacks / "inputs" / "sparse.dcm")))
    series = SeriesInfo(record.identity, "dicom", [record])
    tracemalloc.start()
    try:
        with pytest.raises(LoadError, match=r"32768 x 32768 pixels decoded \(4.29 GB\) is beyond the budget"):
            load_series(series)
        assert tracemalloc.get_traced_memory()[1] < 10 * 1024**2
    finally:
        tracemalloc.stop()


def test_a_tiff_of_endless_pages_is_refused_at_the_page_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_VIEWER_PAGES", "64")
    attack.write_tiff_bomb(tmp_path / "pages.tif", 5000, 4, 4)
    start = time.monotonic()
    found = discover([tmp_path / "pages.tif"])
    assert time.monotonic() - start < HANG_S
    assert "a file of more than 64 pages" in found.problems[0].reason


def test_a_tiff_that_runs_out_of_memory_says_so(tmp_path, monkeypatch):
    attack.write_tiff_bomb(tmp_path / "page.tif", 1, 16, 16)
    series = discover([tmp_path / "page.tif"]).series[0]

    def exhausted(_page):
        raise MemoryError

    monkeypatch.setattr("viewer.io.raster_files._to_array", exhausted)
    with pytest.raises(LoadError) as caught:
        load_series(series)
    assert "not enough memory" in caught.value.reason
    assert str(caught.value).startswith(str(tmp_path / "page.tif"))


# --- resampled grids --------------------------------------------------------------------------


@pytest.fixture
def far_slices(tmp_path, monkeypatch):
    """Five 16 x 16 CT slices 0.01 mm apart but the last at z = 50,000 mm: at the median step,
    an even grid of 5 million slices (5 GB; 5.2 GB and 43 s measured before the budgets)."""
    monkeypatch.setenv("SALIENCY_VIEWER_MEMORY", "24G")
    folder = attack.write_slices(tmp_path / "far", [0.0, 0.01, 0.02, 0.03, 50000.0], size=16, series="far")
    return load_series(discover([folder]).series[0])


def test_mpr_does_not_make_an_even_grid_beyond_the_budget(far_slices):
    tracemalloc.start()
    try:
        reformat = Reformat.of(far_slices)
        display = reformat.display(far_slices.pixels)
        assert tracemalloc.get_traced_memory()[1] < 10 * 1024**2
    finally:
        tracemalloc.stop()
    assert reformat.slice_source is None and display.shape == (5, 16, 16)
    assert "an even grid of 5000001 slices is beyond the budget of 3072 slices" in reformat.grid_refused
    assert reformat.grid_refused in reformat.notes
    # Patient coordinates still come from each slice's own position.
    assert reformat.patient((4.0, 0.0, 0.0))[2] == pytest.approx(50000.0)


def test_a_3d_model_reads_far_slices_in_order_within_its_input(far_slices):
    spec = InputSpec(size=(8, 16, 16), intensity="windows", windows=((40.0, 80.0),), kind="volume")
    tracemalloc.start()
    try:
        x, transform = prepare_volume(far_slices, spec, 1)
        assert tracemalloc.get_traced_memory()[1] < 20 * 1024**2
    finally:
        tracemalloc.stop()
    assert x.shape == (1, 8, 16, 16) and transform.slice_at is None
    said = transform.describe()
    assert "beyond the budget" in said and "slices read in the series' order" in said


def test_a_3d_model_computes_only_what_lands_in_its_input(far_slices):
    """Five evenly spaced slices 10 km apart at 1 mm a voxel scale to 50,000 model slices, of
    which the input holds 8: only those are interpolated."""
    image = replace(
        far_slices,
        frames=tuple(replace(f, position=(0.0, 0.0, 10000.0 * k)) for k, f in enumerate(far_slices.frames)),
    )
    spec = InputSpec(
        size=(8, 16, 16), intensity="windows", windows=((40.0, 80.0),), kind="volume", spacing=(1, 1, 1)
    )
    start = time.monotonic()
    tracemalloc.start()
    try:
        x, transform = prepare_volume(image, spec, 1)
        assert tracemalloc.get_traced_memory()[1] < 20 * 1024**2
    finally:
        tracemalloc.stop()
    assert time.monotonic() - start < HANG_S
    assert x.shape == (1, 8, 16, 16) and transform.scale[0] == pytest.approx(10000.0)


WINDOWS = [(40, 10, 18), (40, 0, 40), (7, 2, 5), (12, 0, 3), (12, 9, 12)]


@pytest.mark.parametrize(("length", "a", "b"), WINDOWS)
def test_a_window_of_a_resized_axis_equals_the_crop_of_the_whole(length, a, b):
    t = torch.from_numpy(np.random.default_rng(length).normal(size=(2, 9, 5)).astype(np.float32))
    whole = _resize_axis(t, 1, length).narrow(1, a, b - a)
    torch.testing.assert_close(_resize_window(t, 1, length, a, b), whole, atol=1e-5, rtol=1e-5)


# --- legitimate data still opens -------------------------------------------------------------


def test_real_and_large_legitimate_data_opens_on_a_small_machine(tmp_path, testdata, monkeypatch):
    """With the budgets of a 2 GiB machine (the floors): pydicom-data's real CT, MR, CR and US
    files, multi-frame objects, the bundled studies, a 3000 x 3000 16-bit chest film and a
    512 x 512 x 300 CT series."""
    monkeypatch.setenv("SALIENCY_VIEWER_MEMORY", "2G")
    real = [
        "CT_small.dcm",
        "MR_small.dcm",
        "RG1_UNCR.dcm",
        "US1_UNCR.dcm",
        "693_UNCR.dcm",
        "emri_small.dcm",  # 10 frames
        "SC_rgb_rle_2frame.dcm",  # 2 colour frames, RLE
    ]
    paths = [testdata(name) for name in real] + [resource_path("samples", "dicom")]
    write_radiograph(np.random.default_rng(0).random((3000, 3000)), tmp_path / "film.dcm", bits_stored=16)
    attack.write_slices(tmp_path / "ct", [1.25 * k for k in range(300)], size=512, series="ct300")
    found = discover([*paths, tmp_path / "film.dcm", tmp_path / "ct"])
    assert not found.problems, found.problems
    shapes = {}
    for series in found.series:
        image = load_series(series)
        assert not image.left_out
        shapes[Path(series.paths[0]).name] = image.pixels.shape
    assert shapes["film.dcm"] == (1, 3000, 3000)
    assert shapes["IM00000.dcm"] == (300, 512, 512)
    assert shapes[Path(testdata("SC_rgb_rle_2frame.dcm")).name] == (2, 100, 100, 3)
    assert shapes[Path(testdata("emri_small.dcm")).name] == (10, 64, 64)
    assert len(found.series) == len(real) + 3 + 2
