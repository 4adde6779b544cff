"""``saliency-viewer explain`` with a segmentation manifest: the model's masks written per label
(NIfTI for a series), a map per region, and the masks' Dice/IoU against the radiologist's."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image as PILImage

from tests.inference.test_segmentation_models import seeded_weights
from viewer.cli import main
from viewer.explain.localization import dice, iou
from viewer.resources import resource_path

pytestmark = pytest.mark.timeout(600)
LABELS = ("background", "intraparenchymal", "subdural")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("segmenter")
    (folder / "manifest.toml").write_text(
        f'name = "head CT segmenter"\ntask = "segmentation"\nlabels = {list(LABELS)!r}\n'.replace("'", '"')
        + '[network]\narch = "monai:UNet"\nweights = "w.safetensors"\nin_channels = 1\n'
        "kwargs = {channels = [8, 16, 32], strides = [2, 2]}\n"
        "[input]\nsize = [64, 64]\nwindows = [[40, 80]]\n"
    )
    seeded_weights(folder / "manifest.toml")
    out = folder / "out"
    code = main(
        [
            "explain",
            str(resource_path("samples", "dicom", "ct_0001")),
            "--model",
            str(folder / "manifest.toml"),
            "--methods",
            "gradcam,gradient",
            "--target",
            "subdural",
            "--annotation",
            str(resource_path("samples", "annotations")),
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


def test_the_models_masks_are_written_per_label(run):
    study = run / "ct_0001"
    for label in LABELS:
        mask = np.load(study / f"mask_{label}.npy")
        assert mask.dtype == bool and mask.ndim == 3  # slices x rows x cols
        assert (study / f"mask_{label}.nii.gz").stat().st_size > 0
        assert (study / f"mask_{label}.png").stat().st_size > 0
    # Softmax masks: each voxel in one label's mask exactly.
    total = sum(np.load(study / f"mask_{label}.npy").astype(int) for label in LABELS)
    assert (total == 1).all()


def test_dice_and_iou_against_the_annotation(run):
    study = run / "ct_0001"
    record = json.loads((study / "segmentation.json").read_text())["model_masks"]
    mask = np.load(study / "mask_subdural.npy")
    truth = np.zeros_like(mask)
    for path in resource_path("samples", "annotations").glob("ct_0001_subdural_s*.png"):
        truth[int(path.stem[-3:])] = np.asarray(PILImage.open(path)) > 0
    assert truth.any()
    assert record["subdural"]["dice"] == pytest.approx(dice(mask, truth), abs=1e-4)
    assert record["subdural"]["iou"] == pytest.approx(iou(mask, truth), abs=1e-4)
    assert "dice" not in record["background"]  # nobody annotated the background


def test_a_row_per_region_map(run):
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [(r["method"], r["target"]) for r in rows] == [("gradcam", "subdural"), ("gradient", "subdural")]
    assert all(r["annotation_label"] for r in rows)  # the region's label matched the annotation
    study = run / "ct_0001"
    assert np.load(study / "gradcam.npy").shape == np.load(study / "mask_subdural.npy").shape


def test_a_3d_segmenter_writes_the_same_files_from_one_input(tmp_path):
    """A 3-D UNet (input.kind = "volume") reads the series as one input: the same files, the masks
    on every slice, and the maps of its region over the whole series."""
    (tmp_path / "manifest.toml").write_text(
        f'name = "head CT segmenter 3-D"\ntask = "segmentation"\nlabels = {list(LABELS)!r}\n'.replace(
            "'", '"'
        )
        + '[network]\narch = "monai:UNet"\nweights = "w.safetensors"\nin_channels = 1\n'
        "kwargs = {channels = [4, 8, 16], strides = [2, 2]}\n"
        '[input]\nkind = "volume"\nsize = [16, 48, 48]\nwindows = [[40, 80]]\n'
    )
    seeded_weights(tmp_path / "manifest.toml")
    out = tmp_path / "out"
    series = resource_path("samples", "dicom", "ct_0001")
    args = [
        "explain",
        str(series),
        "--model",
        str(tmp_path / "manifest.toml"),
        "--methods",
        "gradcam,gradient",
    ]
    annotations = str(resource_path("samples", "annotations"))
    assert (
        main([*args, "--target", "subdural", "--annotation", annotations, "--quiet", "--out", str(out)]) == 0
    )
    study = out / "ct_0001"
    masks = [np.load(study / f"mask_{label}.npy") for label in LABELS]
    assert all(m.shape == (28, 512, 512) for m in masks)
    assert (sum(m.astype(int) for m in masks) == 1).all()
    assert (study / "mask_subdural.nii.gz").stat().st_size > 0
    record = json.loads((study / "segmentation.json").read_text())["model_masks"]
    assert 0 <= record["subdural"]["dice"] <= 1
    for method in ("gradcam", "gradient"):
        values = np.load(study / f"{method}.npy")
        assert values.shape == (28, 512, 512) and np.isfinite(values).all()
        assert (values.reshape(28, -1).max(axis=1) > 0).sum() > 1  # a 3-D map: more than one slice
