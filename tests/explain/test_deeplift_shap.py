"""DeepLIFT and GradientSHAP against Captum, and the properties their papers promise:
summation-to-delta for DeepLIFT (exactly, on every architecture, where Captum's max-pool rule
loses overlapping windows) and, for GradientSHAP, the expectation Captum's estimate converges to
(the mean of Integrated Gradients over the baselines)."""

from __future__ import annotations

import types

import pytest
import torch
from captum.attr import DeepLift as CaptumDeepLift
from captum.attr import GradientShap as CaptumGradientShap
from captum.attr import IntegratedGradients
from torch import nn

from tests.explain.peers import pearson, random_input, random_network, same_snapshot, snapshot
from viewer.explain import ExplainContext, get_method
from viewer.explain.deeplift import deeplift
from viewer.explain.gradients import baseline_input

pytestmark = pytest.mark.timeout(300)
TARGET = 3


def _own_relus(net: nn.Module) -> nn.Module:
    """torchvision's ResNet with one ReLU module per use and none in place: what Captum's
    DeepLift needs (it refuses a module used twice)."""
    net.relu = nn.ReLU()
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        for block in layer:
            block.relu, block.relu2 = nn.ReLU(), nn.ReLU()

            def forward(self, x):
                identity = x if self.downsample is None else self.downsample(x)
                out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
                return self.relu2(out + identity)

            block.forward = types.MethodType(forward, block)
    return net


def _no_inplace(net: nn.Module) -> nn.Module:
    for m in net.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    return net


def test_deeplift_equals_captum_on_vgg11():
    net = _no_inplace(random_network("vgg11"))
    x = random_input(seed=1, size=96)
    base = torch.zeros_like(x)
    theirs = CaptumDeepLift(net).attribute(x, base, target=TARGET)
    torch.testing.assert_close(deeplift(net, x, base, [TARGET])[0], theirs, atol=1e-7, rtol=1e-4)


def test_from_a_blurred_reference_ours_adds_up_where_captums_own_delta_says_it_does_not():
    """Captum's hooks on a ReLU followed by a max pool read the pool's unmodified gradient, which a
    zero reference hides (both ReLU outputs of the reference are zero); from the blurred image its
    own convergence delta shows the loss."""
    net = _no_inplace(random_network("vgg11"))
    x = random_input(seed=1, size=96)
    base = baseline_input(x, "blur")
    with torch.no_grad():
        delta = float(net(x)[0, TARGET] - net(base)[0, TARGET])
    _, theirs_delta = CaptumDeepLift(net).attribute(x, base, target=TARGET, return_convergence_delta=True)
    ours = float(deeplift(net, x, base, [TARGET]).sum())
    assert abs(ours - delta) < 1e-3 * abs(delta) < abs(float(theirs_delta))


def test_deeplift_equals_captum_on_resnet18_without_its_overlapping_max_pool():
    net = _own_relus(random_network("resnet18"))
    net.maxpool = nn.Identity()
    x = random_input(seed=2, size=96)
    base = torch.zeros_like(x)
    theirs = CaptumDeepLift(net).attribute(x, base, target=TARGET)
    torch.testing.assert_close(deeplift(net, x, base, [TARGET])[0], theirs, atol=1e-7, rtol=1e-4)


def test_overlapping_max_pool_windows_keep_summation_to_delta_where_captum_loses_it():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.MaxPool2d(3, 2, 1), nn.Flatten(), nn.Linear(4 * 15 * 15, 5)
    ).eval()
    x = random_input(seed=1, size=32)
    base = torch.zeros_like(x)
    with torch.no_grad():
        delta = float(net(x)[0, TARGET] - net(base)[0, TARGET])
    ours = float(deeplift(net, x, base, [TARGET]).sum())
    theirs = float(CaptumDeepLift(net).attribute(x, base, target=TARGET).sum())
    assert ours == pytest.approx(delta, rel=1e-4)
    assert abs(theirs - delta) > 0.1 * abs(delta)  # max_unpool2d keeps one window per position


@pytest.mark.parametrize("arch", ["resnet18", "densenet121", "mobilenet_v3_small", "vgg11"])
def test_deeplift_adds_up_to_the_change_of_the_logit_and_leaves_the_network_untouched(arch):
    net = random_network(arch)  # as torchvision builds it: reused and in-place ReLUs, functional ones
    x = random_input(seed=3, size=64)
    base = baseline_input(x, "blur")
    before = snapshot(net)
    attributions = deeplift(net, x, base, [0, TARGET])
    with torch.no_grad():
        delta = net(x) - net(base)
    for i, target in enumerate((0, TARGET)):
        assert float(attributions[i].sum()) == pytest.approx(float(delta[0, target]), rel=1e-3, abs=1e-6)
    assert same_snapshot(before, snapshot(net))
    with ExplainContext(net, None, x, task="multiclass") as ctx:
        maps = get_method("deeplift").compute(ctx, [TARGET])
    torch.testing.assert_close(maps[0, 0], attributions[1, 0].sum(dim=0))


def test_gradient_shap_converges_where_captum_does():
    """Both estimates of expected gradients over {blurred, zeros}, 256 samples each, against the
    exact expectation: the mean of the two Integrated Gradients maps (Captum, 64 steps)."""
    net = random_network("resnet18")
    x = random_input(seed=4, size=64)
    bases = torch.cat([baseline_input(x, "blur"), torch.zeros_like(x)])
    ig = IntegratedGradients(net)
    expected = sum(ig.attribute(x, b[None], target=TARGET, n_steps=64) for b in bases) / 2
    torch.manual_seed(0)
    theirs = CaptumGradientShap(net).attribute(x, bases, n_samples=256, stdevs=0.0, target=TARGET)
    with ExplainContext(net, None, x, task="multiclass", seed=0) as ctx:
        ours = get_method("gradient-shap", samples=256).compute(ctx, [TARGET])[0, 0]
    theirs_r = pearson(theirs.sum(dim=1), expected.sum(dim=1))
    ours_r = pearson(ours, expected.sum(dim=1))
    assert theirs_r > 0.9 and ours_r > theirs_r - 0.03, (ours_r, theirs_r)
    assert pearson(ours, theirs.sum(dim=1)) > 0.85


def test_gradient_shap_is_the_same_map_for_the_same_seed_and_another_for_another():
    net = random_network("resnet18")
    x = random_input(seed=5, size=64)

    def run(seed):
        with ExplainContext(net, None, x, task="multiclass", seed=seed) as ctx:
            return get_method("gradient-shap", samples=8).compute(ctx, [TARGET])

    assert torch.equal(run(1), run(1)) and not torch.equal(run(1), run(2))
