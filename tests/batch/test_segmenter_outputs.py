"""A segmenter's own masks in the batch outputs: ``explain --dicom`` writes them as a DICOM SEG
that reads back as the same masks, and ``evaluate`` scores them (Dice, IoU) against the
annotation in ``per_image`` rows and the summary."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from tests.inference.test_segmentation_models import seeded_weights
from viewer.cli import main
from viewer.explain.evaluation import MODEL_MASK, summarise
from viewer.explain.study_scores import evaluate_one
from viewer.inference.model import LoadedModel
from viewer.io.annotations import load_annotation
from viewer.io.discovery import discover
from viewer.io.loader import load_series
from viewer.resources import resource_path

pytestmark = pytest.mark.timeout(600)
CHEST_LABELS = ("background", "nodule", "consolidation")


def _segmenter(folder, labels, windows: str) -> str:
    path = folder / "manifest.toml"
    path.write_text(
        f'name = "toy segmenter"\ntask = "segmentation"\nlabels = {list(labels)!r}\n'.replace("'", '"')
        + '[network]\narch = "monai:UNet"\nweights = "w.safetensors"\nin_channels = 1\n'
        'activation = "softmax"\nkwargs = {channels = [4, 8], strides = [2]}\n'
        f"[input]\nsize = [64, 64]\n{windows}\n"
    )
    seeded_weights(path)
    return str(path)


@pytest.fixture(scope="module")
def chest_segmenter(tmp_path_factory):
    return _segmenter(tmp_path_factory.mktemp("chest"), CHEST_LABELS, 'intensity = "voi"')


def _explain(manifest, source, out, *extra) -> None:
    args = [
        "explain",
        str(source),
        "--model",
        manifest,
        "--methods",
        "gradient",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main([*args, *extra]) == 0


@pytest.mark.parametrize("anonymize", [False, True])
def test_explain_dicom_writes_the_models_masks_as_a_seg_that_reads_back(chest_segmenter, tmp_path, anonymize):
    source = resource_path("samples", "dicom", "cxr_0001.dcm")
    _explain(chest_segmenter, source, tmp_path / "out", "--dicom", *(["--anonymize"] if anonymize else []))
    study = tmp_path / "out" / "cxr_0001"
    record = json.loads((study / "segmentation.json").read_text())
    assert record["dicom_seg"] == "model_masks_seg.dcm"
    seg = pydicom.dcmread(study / "model_masks_seg.dcm")
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert all(s.SegmentAlgorithmType == "AUTOMATIC" for s in seg.SegmentSequence)
    assert seg.SegmentSequence[0].SegmentAlgorithmName == "toy segmenter"
    original = pydicom.dcmread(source, stop_before_pixels=True)
    assert (seg.PatientName == original.PatientName) is not anonymize
    image = load_series(discover([source]).series[0])
    read = load_annotation(study / "model_masks_seg.dcm")
    marked = [label for label in CHEST_LABELS if np.load(study / f"mask_{label}.npy").any()]
    assert {s.SegmentLabel for s in seg.SegmentSequence} == set(marked)
    if not anonymize:  # the SEG references the source's own UIDs: the viewer places it on the image
        for label in marked:
            assert np.array_equal(read.mask(image, label)[0], np.load(study / f"mask_{label}.npy"))


def test_a_seg_of_a_ct_series_holds_each_slices_mask(tmp_path_factory):
    labels = ("background", "intraparenchymal", "subdural")
    manifest = _segmenter(tmp_path_factory.mktemp("ct"), labels, "windows = [[40, 80]]")
    out = tmp_path_factory.mktemp("out")
    source = resource_path("samples", "dicom", "ct_0001")
    _explain(manifest, source, out, "--dicom")
    study = out / "ct_0001"
    image = load_series(discover([source]).series[0])
    read = load_annotation(study / "model_masks_seg.dcm")
    for label in labels:
        ours = np.load(study / f"mask_{label}.npy")  # slices x rows x cols
        if ours.any():
            assert np.array_equal(read.mask(image, label), ours)


def test_evaluate_scores_the_models_masks_with_dice_and_iou(chest_segmenter):
    model = LoadedModel.from_manifest(chest_segmenter, device="cpu")
    series = discover([resource_path("samples", "dicom", "cxr_0001.dcm")]).series[0]
    annotation = load_annotation(resource_path("samples", "annotations", "cxr_0001.json"))
    rows, _pictures = evaluate_one(model, series, "cxr_0001", [annotation], ["gradient"], seed=0)
    mask_rows = {r["label"]: r for r in rows if r["method"] == MODEL_MASK}
    assert set(mask_rows) == {"nodule", "consolidation"}
    image = load_series(series)
    masks = model.predict(image).masks
    for label, row in mask_rows.items():
        ours, truth = masks[0, CHEST_LABELS.index(label)], annotation.mask(image, label)[0]
        both = np.count_nonzero(ours & truth)
        assert row["dice"] == pytest.approx(2 * both / (ours.sum() + truth.sum()))
        assert row["iou"] == pytest.approx(both / np.count_nonzero(ours | truth))
        assert not row["false_positive"]
    summary = {(r["label"], r["method"]): r for r in summarise(rows, n=50)}
    for label, row in mask_rows.items():
        line = summary[(label, MODEL_MASK)]
        assert line["n"] == 1 and line["miou"] == pytest.approx(row["iou"])
        assert line["mdice"] == pytest.approx(row["dice"])
