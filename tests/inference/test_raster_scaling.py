"""8-bit films reach the network as training pipelines made them (issue 42, item 4): the viewer's
probabilities on a PNG equal torchvision's own pipeline on the same file, ``ToTensor`` (x / 255)
then ``Normalize``, where they used to go through the display window, (x + 0.5) / 256. 16-bit
files are scaled by 65535 (ToTensor leaves them unscaled, so the reference divides itself).
The Keras side (``preprocess_input``) is in test_keras_model.py."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image as PILImage
from torchvision import transforms

from tests.inference.layouts import write_manifest
from viewer.inference.model import LoadedModel
from viewer.inference.preprocess import intensity_channels
from viewer.io import discover, load_series

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # ImageNet's, as fine-tuning notebooks use
SIZE = 64


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[LoadedModel, torch.nn.Module]:
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    network = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    torch.save(network.state_dict(), folder / "weights.pt")
    manifest = write_manifest(folder, "resnet18", "weights.pt", labels=["a", "b", "c"], task="multiclass",
                              size=(SIZE, SIZE))  # fmt: skip
    text = (
        manifest.read_text().replace("mean = [0.5]", f"mean = {MEAN}").replace("std = [0.25]", f"std = {STD}")
    )
    manifest.write_text(text)
    return LoadedModel.from_manifest(manifest, "cpu"), network


def _film(size: int = SIZE) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    return 128 + 100 * np.sin(9 * x) * np.cos(5 * y)


def _framework(network, tensor: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(network(transforms.Normalize(MEAN, STD)(tensor)[None]), -1).numpy()


def _viewer(loaded: LoadedModel, path) -> np.ndarray:
    return loaded.predict(load_series(discover([path]).series[0])).probabilities


@pytest.mark.parametrize("kind", ["grey", "rgb"])
def test_8_bit_png_as_totensor(tmp_path, model, kind):
    loaded, network = model
    grey = np.round(_film()).astype(np.uint8)
    pixels = grey if kind == "grey" else np.stack([grey, 255 - grey, grey // 2], axis=-1)
    PILImage.fromarray(pixels).save(tmp_path / "film.png")
    expected = _framework(network, transforms.ToTensor()(PILImage.open(tmp_path / "film.png").convert("RGB")))
    np.testing.assert_allclose(_viewer(loaded, tmp_path / "film.png"), expected, atol=1e-5)


def test_16_bit_png_over_its_full_range(tmp_path, model):
    loaded, network = model
    values = np.round(_film() * 200).astype(np.uint16)
    PILImage.fromarray(values).save(tmp_path / "film16.png")
    stored = np.asarray(PILImage.open(tmp_path / "film16.png"))
    assert stored.dtype == np.uint16
    tensor = torch.from_numpy(stored.astype(np.float32) / np.float32(65535))[None].expand(3, -1, -1)
    np.testing.assert_allclose(
        _viewer(loaded, tmp_path / "film16.png"), _framework(network, tensor), atol=1e-5
    )


def test_a_manifest_saying_otherwise_keeps_its_window(tmp_path, model):
    # intensity = "percentile" stretches the film's own percentiles: not x / 255.
    loaded, _ = model
    PILImage.fromarray(np.round(_film()).astype(np.uint8)).save(tmp_path / "film.png")
    film = load_series(discover([tmp_path / "film.png"]).series[0])
    spec = replace(loaded.manifest.input, intensity="percentile")
    stretched = intensity_channels(film.frame(0), spec, 3, image=film)
    assert stretched.min() == 0.0 and stretched.max() == 1.0
    scaled = intensity_channels(film.frame(0), loaded.manifest.input, 3, image=film)
    np.testing.assert_array_equal(scaled[0], film.frame(0) / np.float32(255))
