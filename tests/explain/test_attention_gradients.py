"""LeGrad against TorchCAM's, and transformer attribution against Chefer et al.'s rule written out
on the attention timm computes itself (its explicit path, fused kernel off), on seeded
torchvision and timm vision transformers."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torchvision
from torchcam.methods import LeGrad as TorchCamLeGrad

from tests.explain.peers import random_input, same_snapshot, snapshot
from tests.inference.layouts import seeded
from viewer.explain import ExplainContext, get_method
from viewer.explain.registry import METHODS, unsupported_reason
from viewer.inference.feature_grid import choose_target_layer, layer_grid, probe_layers

pytestmark = pytest.mark.timeout(300)
SIZE = 64
NETWORKS = {
    "torchvision vit_b_16": lambda: torchvision.models.vit_b_16(weights=None, image_size=SIZE, num_classes=4),
    "timm vit_tiny": lambda: timm.create_model("vit_tiny_patch16_224", num_classes=4, img_size=SIZE),
    "timm deit distilled": lambda: timm.create_model(
        "deit_tiny_distilled_patch16_224", num_classes=4, img_size=SIZE
    ),
}


@pytest.fixture(scope="module", params=list(NETWORKS), ids=str)
def case(request):
    net = seeded(NETWORKS[request.param](), seed=5).eval()
    x = torch.cat([random_input(seed=2, size=SIZE), random_input(seed=3, size=SIZE)])
    layers = probe_layers(net, (3, SIZE, SIZE))
    layer = choose_target_layer(net, layers)
    return request.param, net, x, layer, layer_grid(layers, layer)


def ours(case, method_id: str, targets: list[int], **params) -> torch.Tensor:
    _, net, x, layer, grid = case
    with ExplainContext(net, layer, x, task="multiclass", grid=grid) as ctx:
        return get_method(method_id, **params).compute(ctx, targets)


def test_legrad_equals_torchcam_on_torchvision_vit():
    net = seeded(NETWORKS["torchvision vit_b_16"](), seed=5).eval()
    x = random_input(seed=2, size=SIZE)
    layers = probe_layers(net, (3, SIZE, SIZE))
    layer = choose_target_layer(net, layers)
    with TorchCamLeGrad(net, list(net.encoder.layers)) as extractor:
        net(x)
        theirs = extractor(2, normalized=False)[0]
    with ExplainContext(net, layer, x, task="multiclass", grid=layer_grid(layers, layer)) as ctx:
        mine = get_method("legrad", pooling="mean").compute(ctx, [2])[0]
    torch.testing.assert_close(mine, theirs, atol=1e-7, rtol=1e-5)


def _chefer_reference(net, x, target: int, prefix: int) -> torch.Tensor:
    """Chefer et al.'s rule on the softmax timm hands to ``attn_drop`` on its explicit path."""
    net = copy.deepcopy(net)
    seen, hooks = [], []
    for module in net.modules():
        if hasattr(module, "fused_attn") and hasattr(module, "attn_drop"):
            module.fused_attn = False
            hooks.append(module.attn_drop.register_forward_hook(lambda m, i, o: seen.append(o)))
    x = x.clone().requires_grad_(True)
    logits = net(x)
    grads = torch.autograd.grad(logits[:, target].sum(), seen)
    for hook in hooks:
        hook.remove()
    n = seen[0].shape[-1]
    r = torch.eye(n).expand(x.shape[0], n, n)
    for a, g in zip(seen, grads, strict=True):
        cam = (g * a).clamp(min=0).mean(dim=1)
        r = r + torch.bmm(cam, r)
    return r[:, 0, prefix:]


@pytest.mark.parametrize("name", ["timm vit_tiny", "timm deit distilled"])
def test_transformer_attribution_equals_chefers_rule_on_timms_own_attention(name):
    net = seeded(NETWORKS[name](), seed=5).eval()
    x = torch.cat([random_input(seed=2, size=SIZE), random_input(seed=3, size=SIZE)])
    layers = probe_layers(net, (3, SIZE, SIZE))
    layer = choose_target_layer(net, layers)
    grid = layer_grid(layers, layer)
    expected = _chefer_reference(net, x, 1, grid.prefix).reshape(2, grid.rows, grid.cols)
    with ExplainContext(net, layer, x, task="multiclass", grid=grid) as ctx:
        got = get_method("transformer-attribution").compute(ctx, [1])[0]
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-4)


def test_both_are_class_specific_batched_and_leave_the_network_untouched(case):
    name, net, x, _, grid = case
    before = snapshot(net)
    with torch.no_grad():
        out_before = net(x)
    for method_id in ("legrad", "transformer-attribution"):
        maps = ours(case, method_id, [0, 3])
        assert maps.shape == (2, 2, grid.rows, grid.cols) and torch.isfinite(maps).all(), (name, method_id)
        assert not torch.allclose(maps[0], maps[1]), (name, method_id)  # another label, another map
        single = ours(case, method_id, [3])[0]
        torch.testing.assert_close(maps[1], single)  # the same map alone or with other labels
    assert same_snapshot(before, snapshot(net))
    with torch.no_grad():
        assert torch.equal(net(x), out_before)  # the hooks are gone: fused attention again


def test_they_say_why_a_cnn_cannot_have_them():
    for method_id in ("legrad", "transformer-attribution"):
        reason = unsupported_reason(METHODS[method_id], hooks=True, attention=False)
        assert "self-attention" in reason
