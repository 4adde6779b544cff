"""Score-CAM's default scores only the 128 channels of largest spatial variance (Faster Score-CAM):
on the demo model its map stays within Pearson 0.95 of the map over every channel
(``scorecam-exact``) for a quarter of the forwards."""

from __future__ import annotations

import torch

from tests.explain.peers import pearson, random_input, random_network
from viewer.explain import ExplainContext, get_method
from viewer.inference.catalog import bundled_models
from viewer.inference.model import LoadedModel
from viewer.io import discover
from viewer.io.loader import load_series
from viewer.resources import resource_path


def _count_images(net):
    seen = []
    handle = net.register_forward_hook(lambda _m, inputs, _o: seen.append(len(inputs[0])))
    return seen, handle


def test_the_default_agrees_with_every_channel_for_a_quarter_of_the_forwards():
    model = LoadedModel.from_manifest(bundled_models()["cxr_resnet18"])
    image = load_series(discover([resource_path("samples", "dicom", "cxr_0001.dcm")]).series[0])
    x = model.prepare(image, 0)[0][None]
    maps, images = {}, {}
    for method_id in ("scorecam", "scorecam-exact"):
        seen, handle = _count_images(model.network)
        try:
            with ExplainContext.for_model(model, x) as ctx:
                target = int(ctx.logits[0].argmax())
                maps[method_id] = get_method(method_id).compute(ctx, [target])[0, 0].clamp(min=0)
        finally:
            handle.remove()
        images[method_id] = sum(seen)
    assert pearson(maps["scorecam"], maps["scorecam-exact"]) > 0.95
    assert images["scorecam"] == 1 + 128 + 1  # the recorded pass, 128 channels, the blank image
    assert images["scorecam-exact"] > 3 * images["scorecam"]  # layer4 of a ResNet-18: 512 channels


def test_with_at_least_as_many_channels_as_the_layer_it_is_the_exact_map():
    net = random_network("resnet18")
    x = random_input(seed=1, size=64)
    with ExplainContext(net, "layer4", x, task="multiclass") as ctx:
        every = get_method("scorecam-exact").compute(ctx, [2])
        # Equal up to float rounding: the same channels, summed in another order (by variance).
        torch.testing.assert_close(
            get_method("scorecam", channels=512).compute(ctx, [2]), every, rtol=1e-5, atol=1e-6
        )
        torch.testing.assert_close(
            get_method("scorecam", channels=0).compute(ctx, [2]), every, rtol=1e-5, atol=1e-6
        )
        fewer = get_method("scorecam", channels=16).compute(ctx, [2])
    assert not torch.allclose(fewer, every, rtol=1e-3, atol=1e-3)
