"""``explain`` on segmenters, end to end: every method through the region score, on the native grid.

The pointing test uses a network built by hand whose mask is known (a pixel is "bright" where the
5 x 5 mean of the input exceeds a threshold): its maps of the bright region must point inside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.inference.test_segmentation_models import seeded_weights, write_manifest
from viewer.explain import explain, get_method
from viewer.explain.localization import pointing_game
from viewer.explain.registry import METHODS, cnn_methods
from viewer.inference.built import Built
from viewer.inference.manifest import InputSpec, ModelManifest
from viewer.inference.model import LoadedModel
from viewer.io import discover
from viewer.io.loader import load_series
from viewer.resources import resource_path

pytestmark = pytest.mark.timeout(600)
THRESHOLD = 1.0  # on the normalised input (mean 0.5, std 0.25): about 9 % of the sample film


class BrightRegions(nn.Module):
    """Two labels, "background" and "bright": the bright logit is 8 * (sum over four equal channels
    of relu(5x5 mean - threshold)) - 0.5, background's is 0. So under softmax a pixel is bright
    where its 5 x 5 mean exceeds the threshold by more than 1/64."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 5, padding=2), nn.ReLU())
        self.head = nn.Conv2d(4, 2, 1)
        with torch.no_grad():
            self.features[0].weight.fill_(1 / 25)
            self.features[0].bias.fill_(-THRESHOLD)
            self.head.weight.zero_()
            self.head.weight[1].fill_(8.0)
            self.head.bias.copy_(torch.tensor([0.0, -0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def film():
    return load_series(discover([resource_path("samples", "dicom", "cxr_0001.dcm")]).series[0])


@pytest.fixture(scope="module")
def bright():
    manifest = ModelManifest(
        path=Path("bright/manifest.toml"),
        name="bright regions",
        task="segmentation",
        labels=("background", "bright"),
        arch="python:BrightRegions",
        weights=Path("bright/none"),
        in_channels=1,
        input=InputSpec((128, 128), mean=(0.5,), std=(0.25,)),
        target_layer="features",
    )
    return LoadedModel(manifest, "cpu", built=Built(BrightRegions().eval(), "python", weights_inside=True))


# Methods whose maps point at what drives the score; the pointing game (argmax inside the model's
# own mask, CheXlocalize's tolerance 0) per method on the film.
# Occlusion's windows are small against the film's thin bright structures (a 32-pixel window would
# be 256 native pixels); RISE needs a few hundred masks before its peak settles.
SETTINGS = {"occlusion": {"window": 8, "stride": 4}, "rise": {"masks": 500}}
POINTING = ("gradcam", "gradcam++", "layercam", "gradient", "integrated-gradients", "occlusion", "rise")


def test_maps_of_the_models_own_region_point_inside_it(bright, film):
    result = explain(
        bright,
        film,
        [get_method(m, **SETTINGS.get(m, {})) for m in POINTING],
        targets=["bright"],
        seed=1,
    )
    own = result.masks[0, 1]
    assert 0.02 < own.mean() < 0.2  # a real region: neither empty nor the whole film
    hits = {m.method: pointing_game(m.array[0], own, tolerance=0) for m in result.maps}
    print("pointing game on the model's own mask:", hits)
    assert all(hits.values()), hits
    for smap in result.maps:
        assert any("sum of bright's logits over the model's own mask" in n for n in smap.notes)


def test_a_given_region_moves_the_map_to_it(bright, film):
    """Two bright regions: a map of one drawn around the right half points there, not left."""
    own = bright.predict(film).masks[0, 1]
    half = np.zeros_like(own)
    half[:, film.columns // 2 :] = True
    region = own & half
    assert region.any() and (own & ~half).any()  # bright pixels on both sides
    result = explain(bright, film, ["gradient", "gradcam"], targets=["bright"], regions={"bright": region})
    for smap in result.maps:
        assert pointing_game(smap.array[0], region, tolerance=0), smap.method
        assert any("the region given" in n for n in smap.notes)


def test_every_cnn_method_explains_a_monai_unet_region(tmp_path, film):
    path = write_manifest(
        tmp_path, "monai:UNet", network="kwargs = {channels = [8, 16, 32], strides = [2, 2]}\n"
    )
    seeded_weights(path)
    model = LoadedModel.from_manifest(path, device="cpu")
    methods = [get_method(m, **METHODS[m].quick) for m in cnn_methods()]
    result = explain(model, film, methods, targets=["lung"], seed=0)
    assert result.masks.shape == (1, 3, film.rows, film.columns)
    assert result.probabilities.shape == (1, 3)
    assert {m.method for m in result.maps} == set(cnn_methods())
    for smap in result.maps:
        assert smap.array.shape == (1, film.rows, film.columns), smap.method
        assert np.isfinite(smap.array).all(), smap.method
        assert smap.target == "lung"
