"""CT series: sorting, geometry, splitting, ZIP and DICOMDIR, checked against SimpleITK."""

from __future__ import annotations

import random
import shutil
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.fileset import FileSet

from tests.synthetic import head_volume
from viewer.io import discover, load_series
from viewer.io.dicom_writer import StudyInfo, write_ct_series
from viewer.io.presets import load_presets

SPACING = (2.5, 0.7, 0.6)


@pytest.fixture(scope="module")
def volume():
    return head_volume(24, 96, seed=3)


@pytest.fixture
def series_dir(tmp_path, volume):
    # Shuffled, meaningless file names: order must come from the headers.
    names = [f"img_{i:03d}.dcm" for i in random.Random(7).sample(range(1000), len(volume))]
    write_ct_series(volume, tmp_path / "ct", spacing=SPACING, file_names=names)
    return tmp_path / "ct"


def test_series_is_sorted_along_the_normal_and_matches_simpleitk(series_dir, volume):
    found = discover([series_dir])
    assert not found.problems
    assert len(found.series) == 1
    series = found.series[0]
    assert series.is_volume
    assert len(series.records) == len(volume)
    image = load_series(series)
    assert image.is_volume
    assert image.units == "HU"
    np.testing.assert_array_equal(image.pixels, volume)
    assert image.geometry.spacing == pytest.approx(SPACING)

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series_dir)))
    reference = reader.Execute()
    np.testing.assert_array_equal(image.pixels, sitk.GetArrayViewFromImage(reference))
    assert image.geometry.origin == pytest.approx(reference.GetOrigin())
    assert image.geometry.spacing[::-1] == pytest.approx(reference.GetSpacing())
    assert image.geometry.direction == pytest.approx(reference.GetDirection())
    # Frames keep their source, for matching annotations by SOP Instance UID later.
    assert len({f.sop_instance_uid for f in image.frames}) == len(volume)


def test_memory_peak_is_the_volume_plus_a_slice(tmp_path):
    volume = head_volume(48, 256)
    write_ct_series(volume, tmp_path)
    found = discover([tmp_path])
    load_presets()  # parsed once per process; not part of loading
    tracemalloc.start()
    image = load_series(found.series[0])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert image.nbytes == volume.size * 4
    assert peak < 1.3 * image.nbytes


def test_missing_slice_is_noted(series_dir):
    sorted_files = sorted(
        series_dir.iterdir(), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2])
    )
    sorted_files[10].unlink()
    series = discover([series_dir]).series[0]
    assert any("uneven slice spacing" in n for n in series.notes_all())


def test_slices_without_positions_fall_back_to_instance_number(tmp_path, volume):
    paths = write_ct_series(volume[:6], tmp_path / "ct", file_names=[f"{c}.dcm" for c in "fbdcae"])
    for path in paths:
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        path.unlink()
        ds.save_as(path)
    series = discover([tmp_path]).series[0]
    assert not series.is_volume
    assert [r.instance_number for r in series.records] == [1, 2, 3, 4, 5, 6]
    assert any("InstanceNumber" in n for n in series.notes)
    np.testing.assert_array_equal(load_series(series).pixels, volume[:6])


def test_inconsistent_series_is_split(tmp_path, volume):
    study = StudyInfo(seed=1)
    write_ct_series(volume[:5], tmp_path / "a", study=study)
    small = head_volume(4, 64)
    write_ct_series(small, tmp_path / "b", study=study, origin=(0, 0, 100))
    found = discover([tmp_path])
    assert len(found.series) == 2
    assert len({s.identity.series_uid for s in found.series}) == 1
    assert sorted(s.rows for s in found.series) == [64, 96]
    for series in found.series:
        assert any("split" in n for n in series.notes_all())
        load_series(series)


def test_duplicate_instances_are_reported_once(series_dir, tmp_path):
    copy_dir = tmp_path / "copy"
    shutil.copytree(series_dir, copy_dir)
    found = discover([series_dir, copy_dir])
    assert len(found.series) == 1
    assert len(found.problems) == len(list(copy_dir.iterdir()))
    assert all("duplicate" in p.reason for p in found.problems)


def test_zip_archive_opens_like_the_folder(series_dir, tmp_path, volume):
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in series_dir.iterdir():
            zf.write(path, f"patient/ct/{path.name}")
        zf.writestr("patient/notes.txt", "not an image")
    found = discover([archive])
    assert len(found.series) == 1
    assert [p.reason for p in found.problems] == ["not a DICOM file or a supported image (PNG, JPEG, TIFF)"]
    assert found.problems[0].path == f"{archive}!/patient/notes.txt"
    np.testing.assert_array_equal(load_series(found.series[0]).pixels, volume)


def _write_fileset(series_dir: Path, out: Path) -> Path:
    fileset = FileSet()
    for path in sorted(series_dir.iterdir()):
        fileset.add(pydicom.dcmread(path))
    fileset.write(out)
    return out / "DICOMDIR"


def test_dicomdir_on_disk_and_inside_a_zip(series_dir, tmp_path, volume):
    dicomdir = _write_fileset(series_dir, tmp_path / "cd")
    found = discover([dicomdir])
    assert not found.problems
    assert len(found.series) == 1
    np.testing.assert_array_equal(load_series(found.series[0]).pixels, volume)

    archive = tmp_path / "cd.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in (tmp_path / "cd").rglob("*"):
            if path.is_file():
                zf.write(path, "disc/" + path.relative_to(tmp_path / "cd").as_posix())
    found = discover([archive])
    assert len(found.series) == 1
    assert not found.problems
    np.testing.assert_array_equal(load_series(found.series[0]).pixels, volume)


def test_dicomdir_with_missing_files_reports_them(series_dir, tmp_path):
    dicomdir = _write_fileset(series_dir, tmp_path / "cd")
    victims = sorted(p for p in (tmp_path / "cd").rglob("*") if p.is_file() and p.name != "DICOMDIR")[:2]
    for victim in victims:
        victim.unlink()
    found = discover([dicomdir])
    assert len(found.problems) == 2
    assert all("listed in" in p.reason and "missing" in p.reason for p in found.problems)
    assert len(found.series[0].records) == len(list(series_dir.iterdir())) - 2


def test_compressed_series_decodes_in_workers(tmp_path, volume):
    write_ct_series(volume[:8], tmp_path / "rle", compress="rle")
    series = discover([tmp_path / "rle"]).series[0]
    assert series.transfer_syntax == "RLE Lossless"
    np.testing.assert_array_equal(load_series(series).pixels, volume[:8])


def test_progress_and_cancel(series_dir):
    series = discover([series_dir]).series[0]
    seen = []
    load_series(series, progress=seen.append)
    assert seen[-1] == 1.0
    assert seen == sorted(seen)
    from viewer.io import LoadError

    with pytest.raises(LoadError, match="cancelled"):
        load_series(series, cancelled=lambda: True)
