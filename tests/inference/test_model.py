"""Building networks from manifests, finding the target layer, predicting on opened images."""

import numpy as np
import pytest
import torch
import torchvision

from viewer.inference import LoadedModel, find_target_layer
from viewer.io import discover, load_series
from viewer.resources import resource_path


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("resnet18", "layer4"),
        ("densenet121", "features"),
        ("vgg11", "features"),
        ("mobilenet_v3_small", "features"),
    ],
)
def test_target_layer_is_the_last_spatial_module(arch, expected):
    network = torchvision.models.get_model(arch, weights=None, num_classes=2).eval()
    assert find_target_layer(network, (3, 64, 64)) == expected


def _manifest(tmp_path, task="multilabel", channels=1):
    torch.manual_seed(0)
    network = torchvision.models.resnet18(num_classes=3)
    if channels != 3:
        network.conv1 = torch.nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
    torch.save(network.state_dict(), tmp_path / "w.pth")
    (tmp_path / "manifest.toml").write_text(
        f'name = "t"\ntask = "{task}"\nlabels = ["a", "b", "c"]\n'
        f'[network]\narch = "resnet18"\nweights = "w.pth"\nin_channels = {channels}\n'
        '[input]\nsize = [96, 96]\nintensity = "voi"\nmean = [0.5]\nstd = [0.25]\n'
    )
    return tmp_path / "manifest.toml"


def test_predict_on_a_radiograph(tmp_path):
    model = LoadedModel.from_manifest(_manifest(tmp_path), device="cpu")
    assert model.target_layer == "layer4"
    image = load_series(discover([resource_path("samples", "dicom", "cxr_0001.dcm")]).series[0])
    prediction = model.predict(image)
    assert prediction.probabilities.shape == (1, 3)
    assert np.all((prediction.probabilities > 0) & (prediction.probabilities < 1))
    assert prediction.transforms[0].rows == image.rows


def test_multiclass_uses_softmax_and_series_are_batched(tmp_path):
    model = LoadedModel.from_manifest(_manifest(tmp_path, "multiclass"), device="cpu")
    volume = load_series(discover([resource_path("samples", "dicom", "ct_0001")]).series[0])
    prediction = model.predict(volume, batch_size=8)
    assert prediction.probabilities.shape == (volume.n_frames, 3)
    np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1.0, atol=1e-5)
    single = model.predict(volume, frames=[5])
    np.testing.assert_allclose(single.logits[0], prediction.logits[5], atol=1e-4)
