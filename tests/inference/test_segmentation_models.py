"""Segmentation manifests (task = "segmentation"): built from torchvision and MONAI without any
download, their masks per label on the image's native grid."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from viewer.inference.manifest import ManifestError, load_manifest
from viewer.inference.model import LoadedModel, build_network
from viewer.inference.segmentation import native_masks
from viewer.io import discover
from viewer.io.loader import load_series
from viewer.resources import resource_path

LABELS = '["background", "lung", "finding"]'


def write_manifest(folder, arch: str, *, extra: str = "", network: str = "", channels: int = 1):
    (folder / "manifest.toml").write_text(
        f'name = "seg"\ntask = "segmentation"\nlabels = {LABELS}\n{extra}'
        f'[network]\narch = "{arch}"\nweights = "w.safetensors"\nin_channels = {channels}\n{network}'
        '[input]\nsize = [64, 64]\nintensity = "voi"\nmean = [0.5]\nstd = [0.25]\n'
    )
    return folder / "manifest.toml"


def seeded_weights(manifest_path) -> None:
    """Random, seeded weights for the manifest's own architecture, saved as safetensors."""
    (manifest_path.parent / "w.safetensors").write_bytes(b"")  # load_manifest wants the file
    manifest = load_manifest(manifest_path)
    torch.manual_seed(0)
    network = build_network(manifest)
    state = {k: v.contiguous() for k, v in network.state_dict().items()}
    save_file(state, manifest_path.parent / "w.safetensors")


@pytest.fixture(scope="module")
def film():
    return load_series(discover([resource_path("samples", "dicom", "cxr_0001.dcm")]).series[0])


@pytest.mark.parametrize(
    ("arch", "network", "layer"),
    [
        ("deeplabv3_mobilenet_v3_large", "", "classifier.3"),
        ("monai:UNet", "kwargs = {channels = [8, 16, 32], strides = [2, 2]}\n", None),
    ],
)
def test_masks_are_the_networks_own_on_the_native_grid(tmp_path, film, arch, network, layer):
    path = write_manifest(tmp_path, arch, network=network)
    seeded_weights(path)
    model = LoadedModel.from_manifest(path, device="cpu")
    assert model.head.activation == "softmax" and model.head.axis == 1  # three labels: softmax
    if layer is not None:
        assert model.target_layer == layer  # before the head: a CAM of the logits only repaints them
    prediction = model.predict(film)
    assert prediction.masks is not None and prediction.masks.shape == (1, 3, film.rows, film.columns)
    # Softmax masks partition the image: every pixel in exactly one label's mask.
    assert (prediction.masks.sum(axis=1) == 1).all()
    x, transform = model.prepare(film, 0)
    with torch.no_grad():
        y = model.network(x[None])  # a tensor, even from torchvision's dict-returning segmenter
    probabilities = torch.softmax(y.float(), dim=1)[0]
    np.testing.assert_array_equal(prediction.masks[0], native_masks(probabilities, transform, "softmax"))
    np.testing.assert_allclose(
        prediction.probabilities[0], probabilities.flatten(1).amax(1).numpy(), rtol=1e-5
    )


def test_one_label_is_sigmoid_and_a_declared_activation_wins(tmp_path, film):
    path = tmp_path / "manifest.toml"
    (tmp_path / "w.safetensors").write_bytes(b"")
    path.write_text(
        'name = "seg"\ntask = "segmentation"\nlabels = ["haemorrhage"]\n'
        '[network]\narch = "monai:UNet"\nweights = "w.safetensors"\nin_channels = 1\n'
        "kwargs = {channels = [8, 16], strides = [2]}\n"
        '[input]\nsize = [64, 64]\nintensity = "voi"\n'
    )
    seeded_weights(path)
    model = LoadedModel.from_manifest(path, device="cpu")
    assert model.head.activation == "sigmoid"
    masks = model.predict(film).masks
    x, transform = model.prepare(film, 0)
    with torch.no_grad():
        p = torch.sigmoid(model.network(x[None]))[0]
    np.testing.assert_array_equal(masks[0], native_masks(p, transform, "sigmoid"))

    declared = write_manifest(
        tmp_path,
        "monai:UNet",
        network='activation = "sigmoid"\nkwargs = {channels = [8, 16], strides = [2]}\n',
    )
    assert load_manifest(declared).activation == "sigmoid"


@pytest.mark.parametrize(
    ("extra", "network", "reason"),
    [
        ("", 'activation = "relu"\n', "network.activation must be sigmoid or softmax"),
    ],
)
def test_manifest_errors_name_the_key(tmp_path, extra, network, reason):
    (tmp_path / "w.safetensors").write_bytes(b"")
    with pytest.raises(ManifestError, match=re.escape(reason)):
        load_manifest(write_manifest(tmp_path, "monai:UNet", extra=extra, network=network))


def test_activation_belongs_to_segmentation_and_a_volume_is_read_whole(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"")
    path = tmp_path / "manifest.toml"
    path.write_text(
        'name = "c"\ntask = "multilabel"\nlabels = ["a"]\n'
        '[network]\narch = "resnet18"\nweights = "w.safetensors"\nin_channels = 1\nactivation = "sigmoid"\n'
        "[input]\nsize = [64, 64]\n"
    )
    with pytest.raises(ManifestError, match=r"network\.activation is for task = segmentation"):
        load_manifest(path)
    path.write_text(
        'name = "s"\ntask = "segmentation"\nlabels = ["a"]\n'
        '[network]\narch = "monai:UNet"\nweights = "w.safetensors"\nin_channels = 1\n'
        '[input]\nkind = "volume"\nsize = [16, 64, 64]\n'
    )
    manifest = load_manifest(path)  # a 3-D segmenter (tests/explain/test_volume_segmentation.py)
    assert manifest.input.volume and manifest.input.size == (16, 64, 64)
