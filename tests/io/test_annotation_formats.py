"""Annotation files as the public data sets publish them (layouts from their documentation, built
here, nothing downloaded), matched to images and to a model's labels, and their bad lines."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image as PILImage
from pycocotools import mask as coco
from skimage.draw import polygon as draw_polygon

from viewer.io import discover
from viewer.io.annotation_formats.siim_rle import decode
from viewer.io.annotations import AnnotationError, load_annotation
from viewer.io.label_vocabulary import LabelMatcher, fold
from viewer.io.loader import load_series

NIH_LABELS = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)  # fmt: skip
DEMO_LABELS = ("nodule", "consolidation", "effusion", "cardiomegaly", "pneumothorax")


def png(path, rows=1024, cols=1024):
    path.parent.mkdir(parents=True, exist_ok=True)
    values = (np.arange(rows * cols, dtype=np.uint32).reshape(rows, cols) % 251).astype(np.uint8)
    PILImage.fromarray(values).save(path)
    return load_series(discover([path]).series[0])


def box(rows, cols, x, y, w, h):
    out = np.zeros((rows, cols), bool)
    out[round(y) : round(y + h), round(x) : round(x + w)] = True
    return out


def test_nih_bbox_list_as_published(tmp_path):
    """NIH's header splits its box column on the commas inside it and ends with three empty names."""
    film = png(tmp_path / "images" / "00013118_008.png")
    (tmp_path / "BBox_List_2017.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        "00013118_008.png,Atelectasis,225.084745762712,547.019216763771,86.7796610169491,79.1864406779661,,,\n"
        "00013118_008.png,Cardiomegaly,316.182012,523.0,497.9,254.6,,,\n"
        "00014716_007.png,Infiltrate,533.9,304.0,283.0,397.7,,,\n"
    )
    annotation = load_annotation(tmp_path / "BBox_List_2017.csv")
    assert annotation.labels == ("Atelectasis", "Cardiomegaly", "Infiltrate") and not annotation.problems
    assert annotation.labels_on(film) == ("Atelectasis", "Cardiomegaly")
    demo = LabelMatcher(DEMO_LABELS)
    expected = box(1024, 1024, 316.182012, 523.0, 497.9, 254.6)
    assert np.array_equal(annotation.mask(film, "cardiomegaly", demo)[0], expected)
    assert demo.unmatched(annotation.labels_on(film)) == ("Atelectasis",)
    # NIH's own image labels say "Infiltration" where its box file says "Infiltrate".
    assert LabelMatcher(NIH_LABELS).match("Infiltrate") == ("Infiltration",)


def test_vindr_two_readers_and_no_finding_rows(tmp_path):
    film = png(tmp_path / "9a5094b2563a1ef3ff50dc5c7ff71345.png", 512, 512)
    (tmp_path / "annotations_train.csv").write_text(
        "image_id,rad_id,class_name,x_min,y_min,x_max,y_max,class_id\n"
        "9a5094b2563a1ef3ff50dc5c7ff71345,R10,Cardiomegaly,100.0,200.0,300.0,260.0,3\n"
        "9a5094b2563a1ef3ff50dc5c7ff71345,R9,Cardiomegaly,110.0,205.0,310.0,270.0,3\n"
        "9a5094b2563a1ef3ff50dc5c7ff71345,R9,Nodule/Mass,40,50,60,80,8\n"
        "9a5094b2563a1ef3ff50dc5c7ff71345,R8,No finding,,,,,14\n"
        "051132a778e61a86eb147c7c6f564dfe,R2,Pleural effusion,10,10,abc,20,10\n"
    )
    annotation = load_annotation(tmp_path / "annotations_train.csv")
    assert annotation.problems == ["line 6: box ['10', '10', 'abc', '20'] is not four numbers; line skipped"]
    readers = sorted(r.reader for r in annotation.regions if r.label == "Cardiomegaly")
    assert readers == ["R10", "R9"]
    matcher = LabelMatcher(("cardiomegaly", "nodule", "mass"))
    union = box(512, 512, 100, 200, 200, 60) | box(512, 512, 110, 205, 200, 65)
    assert np.array_equal(annotation.mask(film, "cardiomegaly", matcher)[0], union)
    nodule_mass = box(512, 512, 40, 50, 20, 30)
    for label in ("nodule", "mass"):  # a broader name annotates both
        assert np.array_equal(annotation.mask(film, label, matcher)[0], nodule_mass)


def test_chexlocalize_annotation_and_segmentation_json(tmp_path):
    film = png(tmp_path / "valid" / "patient64541" / "study1" / "view1_frontal.png", 320, 390)
    image_id = "patient64541_study1_view1_frontal"
    polygon = [[60, 40], [200, 52], [230, 180], [120, 230], [50, 150]]
    (tmp_path / "gt_annotations_val.json").write_text(
        json.dumps({image_id: {"img_size": [320, 390], "Pleural Effusion": [polygon], "Cardiomegaly": []}})
    )
    truth = np.zeros((320, 390), bool)
    rr, cc = draw_polygon([p[1] for p in polygon], [p[0] for p in polygon], truth.shape)
    truth[rr, cc] = True
    rle = coco.encode(np.asfortranarray(truth.astype(np.uint8)))
    (tmp_path / "gt_segmentations_val.json").write_text(
        json.dumps({image_id: {"Pleural Effusion": {"size": rle["size"], "counts": rle["counts"].decode()}}})
    )
    matcher = LabelMatcher(DEMO_LABELS)
    drawn = load_annotation(tmp_path / "gt_annotations_val.json").mask(film, "effusion", matcher)[0]
    decoded = load_annotation(tmp_path / "gt_segmentations_val.json").mask(film, "effusion", matcher)[0]
    assert np.array_equal(decoded, truth)  # the RLE round trip is exact
    iou = (drawn & truth).sum() / (drawn | truth).sum()
    assert iou > 0.97  # PIL fills boundary pixels, scikit-image does not


def test_siim_run_lengths_relative_and_absolute(tmp_path):
    film = png(tmp_path / "1.2.276.0.7230010.3.1.4.8323329.5597.1517875188.959090.png", 64, 64)
    truth = np.zeros((64, 64), bool)
    truth[10:30, 20:25] = True
    truth[40:44, 50:60] = True
    flat = truth.T.ravel()  # column-major, as SIIM's mask_functions.py
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat.astype(np.int8), [0]])))
    starts, ends = edges[0::2], edges[1::2]
    lengths = ends - starts
    absolute = " ".join(f"{s + 1} {n}" for s, n in zip(starts, lengths, strict=True))
    gaps = np.diff(np.concatenate([[0], starts])) - np.concatenate([[0], lengths[:-1]])
    relative = " ".join(f"{g} {n}" for g, n in zip(gaps, lengths, strict=True))
    image_id = "1.2.276.0.7230010.3.1.4.8323329.5597.1517875188.959090"
    for encoding, runs in (("relative", relative), ("absolute", absolute)):
        path = tmp_path / f"train-rle-{encoding}.csv"
        path.write_text(f"ImageId, EncodedPixels\n{image_id}, {runs}\n1.2.3.4, -1\n")
        annotation = load_annotation(path)
        assert any(encoding in note for note in annotation.notes)
        assert np.array_equal(annotation.mask(film, "pneumothorax")[0], truth)
    with pytest.raises(ValueError, match="past a 32 x 32 image"):
        decode(starts + 1, lengths, True, 32, 32)


def test_coco_json_polygons_boxes_and_rle(tmp_path):
    film = png(tmp_path / "case7.png", 100, 120)
    square = [10.0, 10.0, 50.0, 10.0, 50.0, 40.0, 10.0, 40.0]
    mask = np.zeros((100, 120), np.uint8)
    mask[60:70, 80:100] = 1
    rle = coco.encode(np.asfortranarray(mask))
    data = {
        "images": [{"id": 7, "file_name": "case7.png", "height": 100, "width": 120}],
        "categories": [{"id": 1, "name": "Nodule"}, {"id": 2, "name": "Pneumothorax"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "segmentation": [square], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 2, "bbox": [5, 60, 10, 20], "segmentation": []},
            {"id": 3, "image_id": 7, "category_id": 2, "iscrowd": 1,
             "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}},
            {"id": 4, "image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1]},
        ],
    }  # fmt: skip
    (tmp_path / "instances.json").write_text(json.dumps(data))
    annotation = load_annotation(tmp_path / "instances.json")
    assert annotation.problems == ["annotation 3: image_id 99 is not in images"]
    matcher = LabelMatcher(DEMO_LABELS)
    expected = coco.decode(coco.merge(coco.frPyObjects([square], 100, 120))).astype(bool)
    assert np.array_equal(annotation.mask(film, "nodule", matcher)[0], expected)
    assert np.array_equal(
        annotation.mask(film, "pneumothorax", matcher)[0], box(100, 120, 5, 60, 10, 20) | mask.astype(bool)
    )


def test_bad_lines_are_named_and_the_rest_loads(tmp_path):
    (tmp_path / "gt.json").write_text(
        json.dumps(
            {
                "patient1_study1_view1_frontal": {
                    "img_size": [100, 100],
                    "Edema": [[[1, 1], [5, 5]]],
                    "Cardiomegaly": [[[10, 10], [90, 10], [90, 400]]],
                    "Consolidation": [[[10, 10], [30, 10], [30, 30]]],
                }
            }
        )
    )
    annotation = load_annotation(tmp_path / "gt.json")
    assert [r.label for r in annotation.regions] == ["Consolidation"]
    assert any("Edema: a polygon with 2 point(s)" in p for p in annotation.problems)
    assert any("Cardiomegaly: a polygon outside the 100 x 100 image" in p for p in annotation.problems)
    (tmp_path / "truncated.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\na.png,Mass,1,2\n")
    # A file none of whose lines can be used is refused with the first line's reason.
    with pytest.raises(AnnotationError, match=r"truncated\.csv: line 2: box \['1', '2', '', ''\] is not"):
        load_annotation(tmp_path / "truncated.csv")
    (tmp_path / "layout.csv").write_text("study,finding\n1,2\n")
    with pytest.raises(AnnotationError, match=r"layout\.csv: unknown box CSV.*VinDr-CXR"):
        load_annotation(tmp_path / "layout.csv")


@pytest.mark.parametrize(
    ("annotation_label", "model_labels", "expected"),
    [
        ("Pleural Effusion", DEMO_LABELS, ("effusion",)),
        ("PLEURAL_EFFUSION", DEMO_LABELS, ("effusion",)),
        ("Pleural_Thickening", ("pleural thickening",), ("pleural thickening",)),
        ("Airspace Opacity", ("Lung Opacity",), ("Lung Opacity",)),
        ("Enlarged Cardiomediastinum", ("enlarged_cardiomediastinum",), ("enlarged_cardiomediastinum",)),
        ("SDH", ("subdural", "epidural"), ("subdural",)),
        ("Infiltrate", DEMO_LABELS, ()),
    ],
)
def test_public_vocabularies_match_model_labels(annotation_label, model_labels, expected):
    assert LabelMatcher(model_labels).match(annotation_label) == expected


def test_manifest_aliases_extend_the_vocabularies():
    matcher = LabelMatcher(DEMO_LABELS, {"consolidation": ("Infiltrate",)})
    assert matcher.match("infiltrate") == ("consolidation",)
    assert fold(" Pleural__Effusion! ") == "pleural effusion"


@pytest.fixture(scope="module")
def ct():
    from viewer.resources import resource_path

    return load_series(discover([resource_path("samples", "dicom", "ct_0001")]).series[0])


def ct_grid(ct, mask: np.ndarray):
    """``mask`` ``(frames, rows, cols)`` as a SimpleITK image on the series' own grid."""
    import SimpleITK as sitk

    out = sitk.GetImageFromArray(mask.astype(np.uint8))
    slice_, row, col = ct.geometry.spacing
    out.SetSpacing((col, row, slice_))
    out.SetOrigin(ct.geometry.origin)
    out.SetDirection(ct.geometry.direction)
    return out


def test_nifti_label_map_lands_on_the_series_in_any_storage_orientation(tmp_path, ct):
    import SimpleITK as sitk

    truth = np.zeros((ct.n_frames, ct.rows, ct.columns), bool)
    truth[8:15, 100:180, 300:380] = True
    labels = ct_grid(ct, truth)
    sitk.WriteImage(labels, str(tmp_path / "049_subdural.nii.gz"))
    # The same map stored in RAS order (what most NIfTI tools write) and at half resolution.
    sitk.WriteImage(sitk.DICOMOrient(labels, "RAS"), str(tmp_path / "ras_subdural.nii"))
    half = sitk.Resample(
        labels, [s // 2 for s in labels.GetSize()], sitk.Transform(), sitk.sitkNearestNeighbor,
        labels.GetOrigin(), [2 * s for s in labels.GetSpacing()], labels.GetDirection(),
    )  # fmt: skip
    sitk.WriteImage(half, str(tmp_path / "half_subdural.nii.gz"))
    matcher = LabelMatcher(("subdural", "epidural"))
    for name in ("049_subdural.nii.gz", "ras_subdural.nii"):
        annotation = load_annotation(tmp_path / name)
        assert annotation.labels_on(ct) == ("subdural",) and annotation.matches(ct)
        assert np.array_equal(annotation.mask(ct, "subdural", matcher), truth), name
    coarse = load_annotation(tmp_path / "half_subdural.nii.gz").mask(ct, "subdural", matcher)
    assert (coarse & truth).sum() / (coarse | truth).sum() > 0.8


def test_nifti_with_several_values_and_one_that_lies_elsewhere(tmp_path, ct):
    import SimpleITK as sitk

    volume = np.zeros((ct.n_frames, ct.rows, ct.columns), np.uint8)
    volume[5:7, 50:60, 50:60] = 1
    volume[10:12, 200:210, 200:210] = 2
    labels = ct_grid(ct, volume)
    sitk.WriteImage(labels, str(tmp_path / "multi.nii.gz"))
    annotation = load_annotation(tmp_path / "multi.nii.gz")
    assert annotation.labels == ("label 1", "label 2")
    assert annotation.mask(ct, "label 2").sum() == 2 * 10 * 10
    elsewhere = ct_grid(ct, volume)
    elsewhere.SetOrigin([v + 10_000 for v in ct.geometry.origin])
    sitk.WriteImage(elsewhere, str(tmp_path / "elsewhere.nii.gz"))
    assert not load_annotation(tmp_path / "elsewhere.nii.gz").matches(ct)
