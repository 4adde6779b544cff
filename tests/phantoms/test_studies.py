"""Phantom studies on disk: DICOM the loader opens, and ground truth (JSON, PNG, SEG) that matches."""

import json

import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

from viewer.cli import main
from viewer.io import discover, load_series, to_display
from viewer.phantoms.chest import render_chest
from viewer.phantoms.head_ct import render_head_ct
from viewer.phantoms.studies import case_seed


@pytest.fixture(scope="module")
def cxr_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("cxr")
    assert main(["phantom", "cxr", "--out", str(out), "--n", "4", "--seed", "1", "--size", "256"]) == 0
    return out


@pytest.fixture(scope="module")
def ct_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("ct")
    args = ["phantom", "ct", "--out", str(out), "--n", "2", "--seed", "1", "--size", "128", "--slices", "12"]
    assert main([*args, "--compress", "rle"]) == 0
    return out


def test_cxr_dicom_round_trips_through_the_loader(cxr_set):
    found = discover([cxr_set / "dicom"])
    assert not found.problems
    assert len(found.series) == 4
    for i, series in enumerate(sorted(found.series, key=lambda s: s.paths[0])):
        case = render_chest(case_seed(1, i), 256)
        image = load_series(series)
        assert image.modality in ("DX", "CR")
        # Display (VOI, then inversion for MONOCHROME1) reproduces the rendered image.
        np.testing.assert_allclose(to_display(image), case.image, atol=2.0 / 4095)
        source = image.geometry.spacing_source
        assert source == ("PixelSpacing" if image.modality == "DX" else "ImagerPixelSpacing")


def test_cxr_ground_truth_matches_masks_and_seg(cxr_set):
    for path in sorted((cxr_set / "annotations").glob("cxr_*.json")):
        record = json.loads(path.read_text())
        i = int(record["name"][-4:]) - 1
        case = render_chest(case_seed(1, i), 256)
        assert record["labels"] == case.labels
        for finding in record["findings"]:
            entry = finding["slices"][0]
            mask = np.asarray(PILImage.open(cxr_set / entry["mask"])) > 0
            assert int(mask.sum()) == entry["area_px"]
            x, y, w, h = entry["bbox"]
            assert mask[y : y + h, x : x + w].sum() == mask.sum()
            assert mask.sum() > 0
        if record["seg"]:
            seg = hd.seg.segread(cxr_set / record["seg"])
            source = pydicom.dcmread(cxr_set / record["images"][0]["file"], stop_before_pixels=True)
            assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
            labels = [d.SegmentLabel for d in seg.SegmentSequence]
            assert labels == [label for label, v in record["labels"].items() if v]
            for number, label in enumerate(labels, start=1):
                pixels = seg.get_pixels_by_source_instance(
                    source_sop_instance_uids=[source.SOPInstanceUID], segment_numbers=[number]
                )
                np.testing.assert_array_equal(pixels[0, ..., 0].astype(bool), case.finding_masks(label))
    assert (cxr_set / "labels.csv").read_text().startswith("name,file,nodule,")


def test_ct_series_in_hounsfield_units_with_truth_per_slice(ct_set):
    found = discover([ct_set / "dicom"])
    assert len(found.series) == 2
    for series in found.series:
        assert series.is_volume
        i = int(series.paths[0].split("ct_")[1][:4]) - 1
        case = render_head_ct(case_seed(1, i), 128, slices=12)
        image = load_series(series)
        assert image.units == "HU"
        # Stored as 12-bit HU + 1024: values round to integers and clip to [-1024, 3071].
        np.testing.assert_allclose(image.pixels, np.clip(np.rint(case.hu), -1024, 3071), atol=0)
        record = json.loads((ct_set / "annotations" / f"ct_{i + 1:04d}.json").read_text())
        assert record["labels"] == case.labels
        uids = [f.sop_instance_uid for f in image.frames]
        for finding in record["findings"]:
            for entry in finding["slices"]:
                assert uids[entry["index"]] == entry["sop_instance_uid"]
                mask = np.asarray(PILImage.open(ct_set / entry["mask"])) > 0
                assert mask.sum() == entry["area_px"] > 0


def test_same_seed_writes_byte_identical_studies(tmp_path):
    for run in ("a", "b"):
        args = ["phantom", "cxr", "--out", str(tmp_path / run), "--n", "1", "--seed", "5", "--size", "128"]
        assert main([*args, "--compress", "j2k"]) == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) >= 3
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_phantom_refuses_to_overwrite(tmp_path, capsys):
    args = ["phantom", "cxr", "--out", str(tmp_path), "--n", "1", "--size", "64"]
    assert main(args) == 0
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err
