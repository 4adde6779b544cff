"""Annotation import: phantom JSON, DICOM SEG, NIH/RSNA box CSV and PNG masks, matched to images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from viewer.io import discover
from viewer.io.annotations import AnnotationError, load_annotation
from viewer.io.dicom_writer import write_radiograph
from viewer.io.loader import load_series
from viewer.resources import resource_path


def open_image(path):
    return load_series(discover([path]).series[0])


@pytest.mark.parametrize(("image", "name"), [("cxr_0001.dcm", "cxr_0001"), ("ct_0001", "ct_0001")])
def test_phantom_json_and_dicom_seg_give_the_same_masks(image, name):
    img = open_image(resource_path("samples", "dicom", image))
    from_json = load_annotation(resource_path("samples", "annotations", f"{name}.json"))
    from_seg = load_annotation(resource_path("samples", "annotations", f"{name}_seg.dcm"))
    assert set(from_json.labels) == set(from_seg.labels)
    assert from_json.matches(img) and from_seg.matches(img)
    for label in from_json.labels:
        mask = from_json.mask(img, label)
        assert mask.shape == (img.n_frames, img.rows, img.columns)
        assert mask.any()
        assert np.array_equal(mask, from_seg.mask(img, label))


def test_ct_masks_land_on_the_annotated_slices():
    img = open_image(resource_path("samples", "dicom", "ct_0001"))
    truth = load_annotation(resource_path("samples", "annotations", "ct_0001.json"))
    slices = np.flatnonzero(truth.mask(img, "subdural").any(axis=(1, 2)))
    assert list(slices) == list(range(6, 19))


@pytest.fixture
def film(tmp_path):
    path = write_radiograph(np.random.default_rng(0).random((100, 120)), tmp_path / "00013118_008.dcm")
    return open_image(path)


def test_nih_box_csv_matches_by_image_name(tmp_path, film):
    csv_path = tmp_path / "BBox_List_2017.csv"
    csv_path.write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        "00013118_008.png,Atelectasis,10.5,20,30,40,,,\n"
        "00014716_007.png,Nodule,1,2,3,4,,,\n"
    )
    annotation = load_annotation(csv_path)
    assert annotation.labels == ("Atelectasis", "Nodule")
    mask = annotation.mask(film, "Atelectasis")[0]
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (20, 59, 10, 39)
    assert not annotation.mask(film, "Nodule").any()  # another image's box


def test_rsna_box_csv_skips_negative_rows(tmp_path, film):
    csv_path = tmp_path / "stage_2_train_labels.csv"
    csv_path.write_text(
        "patientId,x,y,width,height,Target\n"
        "0004cfab-14fd-4e49-80ba-63a80b6bddd6,,,,,0\n"
        "00013118_008,5,6,7,8,1\n"
        "00013118_008,50,60,10,10,1\n"
    )
    annotation = load_annotation(csv_path)
    assert len(annotation.regions) == 2
    assert annotation.mask(film, "pneumonia").sum() == 7 * 8 + 10 * 10


def test_png_mask_named_after_its_image(tmp_path, film):
    mask = np.zeros((100, 120), np.uint8)
    mask[30:40, 50:70] = 255
    PILImage.fromarray(mask).save(tmp_path / "00013118_008_nodule.png")
    annotation = load_annotation(tmp_path / "00013118_008_nodule.png")
    assert annotation.labels == ("nodule",)
    assert annotation.mask(film, "nodule").sum() == 200


def test_bad_annotation_files_are_named_with_a_reason(tmp_path):
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(AnnotationError, match=r"other\.json: not a saliency-viewer ground-truth file"):
        load_annotation(tmp_path / "other.json")
    image = write_radiograph(np.zeros((8, 8)), tmp_path / "image.dcm")
    with pytest.raises(AnnotationError, match=r"image\.dcm: not a DICOM Segmentation \(Modality DX\)"):
        load_annotation(image)
    (tmp_path / "boxes.csv").write_text("a,b\n1,2\n")
    with pytest.raises(AnnotationError, match="unknown box CSV"):
        load_annotation(tmp_path / "boxes.csv")
    with pytest.raises(AnnotationError, match="no such file"):
        load_annotation(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(AnnotationError, match=r"broken\.json: cannot read"):
        load_annotation(tmp_path / "broken.json")
