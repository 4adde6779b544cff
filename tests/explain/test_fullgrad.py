"""FullGrad against pytorch-grad-cam (its post-processing variant), and the paper's completeness:
the input-gradient and bias-gradient terms add up to the logit on a network of ReLUs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import FullGrad as GradCamFullGrad
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from tests.explain.peers import oracle_network, random_input, random_network, same_snapshot, snapshot
from viewer.explain import ExplainContext, get_method
from viewer.explain.fullgrad import full_gradient_terms

pytestmark = pytest.mark.timeout(300)
TARGET = 3


def ours(net, x, **params) -> torch.Tensor:
    with ExplainContext(net, None, x, task="multiclass") as ctx:
        return get_method("fullgrad", **params).compute(ctx, [TARGET])[0]


@pytest.mark.parametrize("arch", ["resnet18", "densenet121", "mobilenet_v3_small", "vgg11"])
def test_fullgrad_equals_pytorch_grad_cam_in_its_variant(arch):
    net = random_network(arch)
    x = torch.cat([random_input(seed=1, size=96), random_input(seed=2, size=96)])
    theirs = GradCamFullGrad(oracle_network(arch, net), [])(x, targets=[ClassifierOutputTarget(TARGET)] * 2)
    before = snapshot(net)
    np.testing.assert_allclose(ours(net, x, variant="pytorch-grad-cam").numpy(), theirs, atol=1e-4)
    assert same_snapshot(before, snapshot(net))


@pytest.mark.parametrize("arch", ["resnet18", "densenet121", "vgg11"])
def test_the_terms_add_up_to_the_logit(arch):
    """f(x) = x . df/dx + sum over bias layers of b . df/dz (+ the classifier's own bias), exactly,
    for piecewise-linear networks: every batch norm's and convolution's bias was found, functional
    calls included (DenseNet's trailing F.relu)."""
    net = random_network(arch)
    x = random_input(seed=3, size=64)
    (terms,) = full_gradient_terms(net, x, [TARGET])
    classifier = net.fc if arch == "resnet18" else net.classifier[-1] if arch == "vgg11" else net.classifier
    with torch.no_grad():
        logit = float(net(x)[0, TARGET])
    total = sum(float(t.sum()) for t in terms) + float(classifier.bias[TARGET])
    assert total == pytest.approx(logit, rel=1e-4, abs=1e-5)
    assert len(terms) - 1 == sum(
        isinstance(m, torch.nn.BatchNorm2d) or (isinstance(m, torch.nn.Conv2d) and m.bias is not None)
        for m in net.modules()
    )


def test_the_paper_variant_rescales_each_term_over_all_its_channels():
    net = random_network("resnet18")
    x = random_input(seed=4, size=64)
    (terms,) = full_gradient_terms(net, x, [TARGET])
    expected = 0
    for t in terms:
        t = t.abs()
        t = (t - t.amin()) / ((t - t.amin()).amax() + 1e-6)
        expected = expected + torch.nn.functional.interpolate(
            t, size=(64, 64), mode="bilinear", align_corners=True
        ).sum(dim=1)
    torch.testing.assert_close(ours(net, x), expected)
    with pytest.raises(ValueError, match="variant"):
        get_method("fullgrad", variant="smooth")


def test_fullgrad_is_refused_on_transformers_with_the_reason():
    from viewer.explain.registry import METHODS, unsupported_reason

    reason = unsupported_reason(METHODS["fullgrad"], hooks=True, attention=True)
    assert "convolutional networks" in reason
    assert unsupported_reason(METHODS["fullgrad"], hooks=True, attention=False) is None
