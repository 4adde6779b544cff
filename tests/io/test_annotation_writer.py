"""Saving annotations: ground-truth JSON + PNG masks and DICOM SEG, read back with equal masks."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

from viewer.io import discover, load_series
from viewer.io.annotation_writer import save_annotation_json, save_annotation_seg
from viewer.io.annotations import Annotation, Region, load_annotation
from viewer.resources import resource_path

SAMPLES = [("cxr_0001.dcm", "cxr_0001"), ("ct_0001", "ct_0001")]
BOX = (10.5, 20.0, 30.0, 40.0)


def digests(path) -> dict[str, str]:
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


@pytest.fixture(scope="module", params=SAMPLES, ids=["radiograph", "ct"])
def case(request):
    """An opened sample, its ground truth, and a drawn box on its last frame."""
    image_name, name = request.param
    image_path = resource_path("samples", "dicom", image_name)
    image = load_series(discover([image_path]).series[0])
    annotation = load_annotation(resource_path("samples", "annotations", f"{name}.json"))
    annotation.regions.append(
        Region("drawn box", bbox=BOX, sop_instance_uid=image.frames[-1].sop_instance_uid)
    )
    return image_path, image, annotation


def assert_same_masks(image, expected: Annotation, actual: Annotation) -> None:
    assert set(actual.labels) == set(expected.labels)
    for label in expected.labels:
        mask = expected.mask(image, label)
        assert mask.any()
        assert np.array_equal(actual.mask(image, label), mask), label


def test_json_round_trip(tmp_path, case):
    image_path, image, annotation = case
    before = digests(image_path)
    path = save_annotation_json(annotation, image, tmp_path / "set" / "annotations" / "mine.json")
    assert_same_masks(image, annotation, load_annotation(path))

    record = json.loads(path.read_text())
    assert record["format"] == "saliency-viewer-ground-truth/1"
    assert record["study_uid"] == image.identity.study_uid
    (box,) = next(f for f in record["findings"] if f["label"] == "drawn box")["slices"]
    assert box["shape"] == "box" and box["bbox"] == list(BOX)
    assert box["sop_instance_uid"] == image.frames[-1].sop_instance_uid
    # Masks lie next to the JSON, named after it, as the phantom sets name theirs.
    masks = sorted(p.name for p in path.parent.glob("*.png"))
    assert masks and all(m.startswith("mine_") for m in masks)
    assert len(masks) == sum(len(f["slices"]) for f in record["findings"])
    assert digests(image_path) == before


def test_seg_round_trip(tmp_path, case):
    image_path, image, annotation = case
    before = digests(image_path)
    path = save_annotation_seg(annotation, image, tmp_path / "mine_seg.dcm")
    assert_same_masks(image, annotation, load_annotation(path))

    ds = pydicom.dcmread(path)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == image.identity.study_uid
    assert ds.SeriesInstanceUID != image.identity.series_uid
    assert [s.SegmentLabel for s in ds.SegmentSequence] == list(annotation.labels)
    referenced = {
        item.ReferencedSOPInstanceUID
        for series in ds.ReferencedSeriesSequence
        for item in series.ReferencedInstanceSequence
    }
    assert referenced == {f.sop_instance_uid for f in image.frames}
    assert digests(image_path) == before


def test_never_overwrites(tmp_path, case):
    _, image, annotation = case
    json_path = save_annotation_json(annotation, image, tmp_path / "a" / "mine.json")
    seg_path = save_annotation_seg(annotation, image, tmp_path / "mine_seg.dcm")
    before = digests(tmp_path)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        save_annotation_json(annotation, image, json_path)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        save_annotation_seg(annotation, image, seg_path)
    # A new JSON whose mask names are taken: refused before anything is written.
    json_path.rename(json_path.with_name("moved.json"))
    with pytest.raises(FileExistsError, match=r"mine_.*\.png"):
        save_annotation_json(annotation, image, json_path)
    assert not json_path.exists()
    after = digests(tmp_path)
    after[str(json_path)] = after.pop(str(json_path.with_name("moved.json")))
    assert after == before


def test_regions_of_other_images_are_refused(tmp_path, case):
    _, image, _ = case
    elsewhere = Annotation("other", [Region("nodule", bbox=BOX, sop_instance_uid="1.2.3.4")])
    with pytest.raises(ValueError, match="no region"):
        save_annotation_json(elsewhere, image, tmp_path / "a" / "x.json")
    with pytest.raises(ValueError, match="no region"):
        save_annotation_seg(elsewhere, image, tmp_path / "x.dcm")
    assert list(tmp_path.iterdir()) == []


def test_raster_images_cannot_be_saved_by_uid(tmp_path):
    """A PNG has no SOP Instance UID for the JSON to match, nor anything for a SEG to reference."""
    png = tmp_path / "film.png"
    PILImage.fromarray(np.zeros((40, 50), np.uint8)).save(png)
    image = load_series(discover([png]).series[0])
    annotation = Annotation("drawn", [Region("nodule", bbox=BOX, file="film")])
    assert annotation.mask(image).any()
    with pytest.raises(ValueError, match="SOP Instance UID"):
        save_annotation_json(annotation, image, tmp_path / "a" / "x.json")
    with pytest.raises(ValueError, match="DICOM"):
        save_annotation_seg(annotation, image, tmp_path / "x.dcm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["film.png"]
