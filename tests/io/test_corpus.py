"""Every file of pydicom's test corpus (pydicom-data included) loads, or is skipped with a reason."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.pixels import apply_modality_lut

from viewer.io import LoadError, discover, load_series, to_display
from viewer.io.dicom_header import read_header
from viewer.io.sources import FileRef

CORPUS = sorted(f for f in get_testdata_files() if os.path.isfile(f))


def test_corpus_is_the_full_one():
    # pydicom ships ~100 files and pydicom-data ~140 more; fewer means pydicom-data is missing.
    assert len(CORPUS) >= 240


@pytest.mark.parametrize("path", CORPUS, ids=[os.path.basename(p) for p in CORPUS])
def test_each_file_loads_or_is_reported(path):
    found = discover([path])
    for problem in found.problems:
        assert problem.reason
        assert "Traceback" not in problem.reason
    if os.path.basename(path).startswith("DICOMDIR"):
        # An index: what it lists is opened instead (the corpus' indexes list images without pixels).
        assert found.files_examined > 1 or found.problems
        return
    if not found.series:
        assert [p.path for p in found.problems] == [path]
        return
    assert not found.problems
    for series in found.series:
        try:
            image = load_series(series)
        except LoadError as exc:
            assert exc.path == path  # the error names the file
            assert exc.reason
            assert "Traceback" not in str(exc)
            continue
        assert image.pixels.ndim in (3, 4)
        assert image.n_frames == series.n_frames
        assert (image.rows, image.columns) == (series.rows, series.columns)
        if not image.is_color:
            assert image.pixels.dtype == np.float32
        grey = to_display(image, frame=image.n_frames // 2)
        assert grey.dtype == np.float32
        assert np.isfinite(grey).all()
        assert grey.min() >= 0.0
        assert grey.max() <= 1.0


def test_whole_corpus_as_folders_accounts_for_every_file():
    roots = sorted({os.path.dirname(p) for p in CORPUS if "dicomdirtests" not in p})
    found = discover(roots)
    in_series = {p for s in found.series for p in s.paths}
    reported = {p.path for p in found.problems}
    files = {os.path.join(root, name) for root in roots for name in os.listdir(root)}
    files = {f for f in files if os.path.isfile(f) and not os.path.basename(f).startswith(".")}
    missing = sorted(files - in_series - reported)
    assert not missing, missing
    # Most of the corpus is displayable.
    assert len(found.series) > 100


def _native_fast_path_files():
    out = []
    for path in CORPUS:
        try:
            record = read_header(FileRef(path))
        except LoadError:
            continue
        if record.pixel_location is not None:
            out.append(path)
    return out


FAST = _native_fast_path_files()


def test_fast_path_covers_the_common_uncompressed_files():
    assert len(FAST) >= 30


@pytest.mark.parametrize("path", FAST, ids=[os.path.basename(p) for p in FAST])
def test_direct_read_equals_pydicom(path):
    """The direct-from-disk read gives exactly pydicom's pixel_array plus Modality LUT."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=True)
        try:
            reference = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        except Exception as exc:
            pytest.skip(f"pydicom itself cannot decode it: {exc}")
    image = load_series(discover([path]).series[0])
    np.testing.assert_array_equal(image.pixels[0], reference)


def test_truncated_pixel_data_is_reported(testdata):
    path = testdata("MR_truncated.dcm")
    found = discover([path])
    with pytest.raises(LoadError, match=r"truncated|less than expected") as error:
        load_series(found.series[0])
    assert error.value.path == path
