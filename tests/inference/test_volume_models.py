"""3-D models (``input.kind = "volume"``): the whole series is one input ``(C, D, H, W)``,
resampled as the manifest says with the transform recorded, and every map comes back on the
series' own voxel grid, a blob where the blob is."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.inference.layouts import seeded, write_manifest
from viewer.explain.engine import UnsupportedMethod, explain, support_reason
from viewer.explain.registry import METHODS
from viewer.inference.architectures import family
from viewer.inference.built import Built
from viewer.inference.manifest import ManifestError, load_manifest
from viewer.inference.model import LoadedModel
from viewer.inference.volume import VolumeTransform, prepare_volume, volume_geometry
from viewer.io.image import FrameInfo, Geometry, Identity, Image, Window

LABELS = ["haemorrhage", "normal"]
VOLUME = '[input]\nkind = "volume"\nwindows = [[60, 20]]\n'  # brain (30 HU) 0, the blob (70 HU) 1


def _series(values: np.ndarray, spacing=(5.0, 0.5, 0.5), z=None) -> Image:
    z = [spacing[0] * k for k in range(values.shape[0])] if z is None else z
    frames = tuple(
        FrameInfo(f"memory:{k}", sop_instance_uid=f"1.2.3.{k}", position=(0.0, 0.0, float(z[k])))
        for k in range(values.shape[0])
    )
    return Image(
        values.astype(np.float32),
        "MONOCHROME2",
        Geometry(spacing, "PixelSpacing", (0.0, 0.0, 0.0)),
        Identity(modality="CT"),
        frames,
        default_window=Window(40.0, 80.0),
        is_volume=True,
        units="HU",
    )


def _blob_series(centre=(12, 30, 70), shape=(20, 96, 120)) -> Image:
    """Brain (30 HU) with one bright blob (70 HU) about 10 mm across at voxel ``centre``."""
    k, j, i = np.indices(shape, dtype=np.float32)
    mm = ((k - centre[0]) * 5.0) ** 2 + ((j - centre[1]) * 0.5) ** 2 + ((i - centre[2]) * 0.5) ** 2
    return _series(np.where(mm < 5.0**2, 70.0, 30.0))


class BlobNet(nn.Module):
    """A 3-D "detector": label 0's logit is the summed excess brightness after a 3-D convolution,
    so every sound map must peak on the bright blob."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU())
        with torch.no_grad():
            self.features[0].weight.zero_()
            self.features[0].weight[:, 0, 1, 1, 1] = 1.0
            self.features[0].bias.copy_(torch.tensor([-0.1, -0.2, -0.3, -0.4]))
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, -1.0, -1.0]]))
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(self.features(x).sum(dim=(2, 3, 4)))


# The test's detector as a family of its own, through the registry users' families go in by.
family("blobtest")(lambda manifest, name: Built(BlobNet(), "blobtest"))


def _manifest(tmp_path, arch: str, inputs: str, size: str) -> Path:
    text = write_manifest(tmp_path, arch, "weights.pt", labels=LABELS, in_channels=1).read_text()
    text = text.replace("size = [64, 64]", size)
    text = text.replace("mean = [0.5]\nstd = [0.25]", "mean = [0.0]\nstd = [1.0]")
    (tmp_path / "manifest.toml").write_text(text.replace("[input]\n", inputs, 1))
    return tmp_path / "manifest.toml"


def _model(tmp_path, arch="blobtest:BlobNet", inputs=VOLUME, network=None, size=(16, 32, 32)) -> LoadedModel:
    torch.save((network or BlobNet()).state_dict(), tmp_path / "weights.pt")
    manifest = _manifest(tmp_path, arch, inputs, f"size = [{', '.join(map(str, size))}]")
    return LoadedModel.from_manifest(manifest, device="cpu")


def test_manifest_keys_of_a_volume_model(tmp_path):
    model = _model(tmp_path, inputs=VOLUME + "spacing = [5.0, 2.0, 2.0]\n")
    spec = model.manifest.input
    assert spec.volume and spec.size == (16, 32, 32) and spec.spacing == (5.0, 2.0, 2.0)
    for inputs, size, said in [
        ('[input]\nkind = "volume"\n', "size = [32, 32]", r"\[depth, height, width\]"),
        ('[input]\nkind = "cube"\n', "size = [32, 32]", "input.kind must be image or volume"),
        ("[input]\nspacing = [1.0, 1.0, 1.0]\n", "size = [32, 32]", "input.spacing is"),
        ('[input]\nkind = "volume"\ncontext = "adjacent-slices"\n', "size = [8, 32, 32]", "a volume holds"),
    ]:
        with pytest.raises(ManifestError, match=said):
            load_manifest(_manifest(tmp_path, "blobtest:BlobNet", inputs, size))


def test_geometry_keeps_the_physical_aspect_or_the_given_spacing(tmp_path):
    image = _blob_series()  # 20 x 96 x 120 voxels of 5 x 0.5 x 0.5 mm: 100 x 48 x 60 mm
    spec = _model(tmp_path).manifest.input
    letterbox = volume_geometry(image, spec)
    # One scale in mm for the three axes: the 100 mm depth fills 16 voxels, 6.25 mm each.
    assert letterbox.scale[0] == pytest.approx(16 / 20)
    np.testing.assert_allclose(letterbox.model_spacing, (6.25, 6.25, 6.25), rtol=0.05)
    assert letterbox.offset[0] == 0 and letterbox.offset[1] > 0  # padded in-plane, centred

    stretch = volume_geometry(image, replace(spec, resize="stretch"))
    assert stretch.scale == pytest.approx((16 / 20, 32 / 96, 32 / 120)) and stretch.offset == (0, 0, 0)
    fixed = volume_geometry(image, replace(spec, spacing=(5.0, 2.0, 2.0)))
    assert fixed.scale == pytest.approx((1.0, 24 / 96, 30 / 120))
    assert fixed.offset == (-2.0, 4.0, 1.0)  # 20 slices cropped to 16, centred; in-plane padded


@pytest.mark.parametrize("resize", ["letterbox", "stretch", "center-crop"])
def test_a_smooth_volume_goes_there_and_back(tmp_path, resize):
    k, j, i = np.indices((20, 48, 40), dtype=np.float32)
    image = _series(k * 2.0 + j * 0.5 - i * 0.25, spacing=(2.0, 1.0, 1.0))
    inputs = f'[input]\nkind = "volume"\nwindows = [[25, 100]]\nresize = "{resize}"\n'
    spec = _model(tmp_path, inputs=inputs).manifest.input
    x, transform = prepare_volume(image, spec, 1)
    assert x.shape == (1, 16, 32, 32) and isinstance(transform, VolumeTransform)
    back = transform.to_native(x[0]).numpy()
    # What the model saw of the series, put back where it came from: a linear ramp survives area
    # averaging and linear interpolation, so it matches wherever the model saw it (inner voxels).
    expected = (image.pixels + 25.0) / 100.0  # the linear window [-25, 75] HU
    seen = np.zeros(image.pixels.shape, bool)
    inside = []
    for n, scale, offset, size in zip(
        transform.shape, transform.scale, transform.offset, transform.size, strict=True
    ):
        centre = (np.arange(n) + 0.5) * scale + offset  # in model voxels
        low, high = max(offset, 0), min(offset + n * scale, size)  # where the series lies in the input
        inside.append((centre > low + 1.5) & (centre < high - 1.5))
    seen[np.ix_(*inside)] = True
    assert seen.sum() > 1000
    np.testing.assert_allclose(back[seen], expected[seen], atol=0.02)


def test_unevenly_spaced_slices_are_read_at_their_true_positions(tmp_path):
    """Slice 6 missing from a 2 mm series: the model sees an even 2 mm grid (the gap filled
    between its neighbours), and every native slice's map comes back from its own position."""
    z = np.array([2.0 * k for k in range(21) if k != 6])
    k, j, i = np.meshgrid(z, np.arange(48.0), np.arange(40.0), indexing="ij")
    image = _series(np.float32(k + j * 0.5 - i * 0.25), spacing=(2.0, 1.0, 1.0), z=z)
    spec = _model(
        tmp_path, inputs='[input]\nkind = "volume"\nwindows = [[20, 100]]\nresize = "stretch"\n'
    ).manifest.input
    x, transform = prepare_volume(image, spec, 1)
    assert transform.even_slices == 21 and transform.slice_at[6] == pytest.approx(7.0)
    assert "uneven slice spacing (2.00 to 4.00 mm)" in transform.describe()
    back = transform.to_native(x[0]).numpy()
    expected = (image.pixels + 30.0) / 100.0  # linear in millimetres, so exact where seen
    np.testing.assert_allclose(back[2:-2, 2:-2, 2:-2], expected[2:-2, 2:-2, 2:-2], atol=0.02)
    # Read as if evenly spaced, the slices past the gap would be a slice off: 2 mm of the ramp.
    naive = replace(transform, slice_at=None, even_slices=0)
    assert np.abs(naive.to_native(x[0]).numpy()[8:-2] - expected[8:-2]).max() > 0.015


def test_a_volume_model_predicts_once_for_the_series(tmp_path):
    model = _model(tmp_path)
    image = _blob_series()
    prediction = model.predict(image)
    assert prediction.per_volume and prediction.probabilities.shape == (20, 2)
    assert (prediction.probabilities == prediction.probabilities[0]).all()
    x, _ = model.prepare_volume(image)
    with torch.no_grad():
        direct = torch.sigmoid(model.network(x[None]))[0].numpy()
    np.testing.assert_allclose(prediction.probabilities[0], direct, rtol=1e-6)
    model.predict(image, frames=[3])
    assert model.preparations == 1  # the volume is prepared once


VOLUME_METHODS = [
    "gradcam",
    "gradcam++",
    "layercam",
    "gradient",
    "guided-backprop",
    "integrated-gradients",
    "occlusion",
    "rise",
    "lime",
]
QUICK = {
    "integrated-gradients": {"steps": 8},
    "occlusion": {"window": 4, "stride": 4},
    "rise": {"masks": 1000, "cells": 8},
    "lime": {"samples": 300, "superpixels": 120},
}


@pytest.mark.parametrize("method", VOLUME_METHODS)
def test_every_volume_method_finds_the_blob_on_the_native_grid(tmp_path, method):
    model = _model(tmp_path)
    image = _blob_series()
    instance = METHODS[method](**QUICK.get(method, {}))
    result = explain(model, image, [instance], targets=["haemorrhage"], frames=[0])
    smap = result.maps[0]
    assert smap.frames == tuple(range(20)) and smap.array.shape == image.pixels.shape
    assert smap.grid.shape == (16, 32, 32)
    assert any("3-D model" in note for note in smap.notes)
    # The blob (about 10 mm across around voxel (12, 30, 70)) holds the map's strongest values;
    # block and supervoxel maps paint a whole block with them.
    strength = np.abs(smap.array)
    assert strength[12, 30, 70] >= 0.8 * strength.max(), (method, strength[12, 30, 70], strength.max())
    far = strength[:, :, :30].mean()  # the series' left quarter, 20 mm from the blob
    assert strength[12, 26:35, 66:75].mean() > 2 * far


def test_a_single_image_is_refused_by_a_3d_model(tmp_path):
    with pytest.raises(ValueError, match="reads a series of slices"):
        _model(tmp_path).predict(_series(np.zeros((1, 32, 32))))


def test_2d_only_methods_are_refused_with_the_reason(tmp_path):
    model = _model(tmp_path)
    assert support_reason(METHODS["lrp"], model) is not None
    assert "written for 2-D inputs" in support_reason(METHODS["deeplift"], model)
    assert support_reason(METHODS["gradcam"], model) is None
    with pytest.raises(UnsupportedMethod, match="on this 3-D model use gradcam"):
        explain(model, _blob_series(), ["fullgrad"])


@pytest.mark.slow  # keeps the default run within its budget
def test_monai_densenet_3d_builds_and_explains(tmp_path):
    pytest.importorskip("monai")
    from monai.networks.nets import DenseNet121

    network = seeded(DenseNet121(spatial_dims=3, in_channels=1, out_channels=2))
    model = _model(tmp_path, arch="monai:DenseNet121", network=network, size=(64, 64, 64))
    assert model.grid is not None and model.grid.depth >= 1
    result = explain(model, _blob_series(), ["gradcam"], targets=["haemorrhage"])
    assert result.maps[0].array.shape == (20, 96, 120)


RSNA = ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any"]


def test_explain_command_with_a_3d_monai_model_on_the_head_ct(tmp_path, capsys):
    """The batch command end to end: maps of every slice from one 3-D input, NIfTI on the CT's
    grid, one prediction for the series, localization against the subdural masks, and the 2-D
    only scores (deletion/insertion, sanity) left empty rather than computed on a wrong input."""
    pytest.importorskip("monai")
    import csv
    import json

    import SimpleITK as sitk
    from monai.networks.nets import DenseNet121

    from viewer.cli import main
    from viewer.resources import resource_path

    folder = tmp_path / "model"
    folder.mkdir()
    torch.save(
        seeded(DenseNet121(spatial_dims=3, in_channels=1, out_channels=6)).state_dict(), folder / "w.pt"
    )
    text = write_manifest(folder, "monai:DenseNet121", "w.pt", labels=RSNA, in_channels=1).read_text()
    text = text.replace("size = [64, 64]", "size = [32, 64, 64]")
    (folder / "manifest.toml").write_text(text.replace("[input]\n", VOLUME, 1))
    out = tmp_path / "out"
    args = ["explain", str(resource_path("samples", "dicom", "ct_0001")), "--model", str(folder)]
    args += ["--methods", "gradcam,gradient,lrp", "--target", "subdural", "--steps", "4", "--sanity"]
    args += ["--annotation", str(resource_path("samples", "annotations")), "--quiet", "--out", str(out)]
    assert main(args) == 2  # LRP has no 3-D rules: named, nothing run
    assert "written for 2-D inputs" in capsys.readouterr().err
    args[args.index("gradcam,gradient,lrp")] = "gradcam,gradient"
    assert main(args) == 0
    study = out / "ct_0001"
    for method in ("gradcam", "gradient"):
        maps = np.load(study / f"{method}.npy")
        assert maps.shape == (28, 512, 512) and np.isfinite(maps).all()
        nifti = sitk.ReadImage(str(study / f"{method}.nii.gz"))
        assert nifti.GetSize() == (512, 512, 28)
    per_frame = json.loads((study / "predictions.json").read_text())["per_frame"]["subdural"]
    assert len(per_frame) == 28 and len(set(per_frame)) == 1  # one output for the series
    with (out / "metrics.csv").open() as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert np.load(study / "gradient.npy").max() > 0  # random weights may leave Grad-CAM all negative
    assert rows["gradient"]["iou_otsu"] != "" and rows["gradient"]["target"] == "subdural"
    assert rows["gradient"]["deletion_auc"] == "" and rows["gradient"]["sanity_verdict"] == ""


def test_torchvision_r3d_18_on_one_channel_and_the_model_doctor(tmp_path):
    """A torchvision video ResNet as a CT model: its 3-D stem takes the manifest's one channel,
    the default target layer is its last 3-D grid, and the doctor says how the series is read."""
    from viewer.inference.doctor import check_model

    torch.manual_seed(0)
    model = _model(tmp_path, arch="r3d_18", network=_r3d(), size=(16, 64, 64))
    assert (
        model.target_layer == "layer4"
        and model.grid.depth == 2
        and (model.grid.rows, model.grid.cols) == (4, 4)
    )
    rise = METHODS["rise"](masks=16, cells=4)
    result = explain(model, _blob_series(), ["gradcam", rise], targets=["haemorrhage"])
    assert [m.array.shape for m in result.maps] == [(20, 96, 120)] * 2
    report = check_model(tmp_path / "manifest.toml", _blob_series()).text()
    assert "16 x 64 x 64" in report and "3-D: the whole series is one input" in report
    assert "one forward pass failed" not in report


def _r3d() -> nn.Module:
    import torchvision

    network = torchvision.models.get_model("r3d_18", weights=None, num_classes=2)
    network.stem[0] = nn.Conv3d(1, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False)  # as the user trained it
    return seeded(network)
