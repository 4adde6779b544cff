"""viewer.explain on in-memory networks against pytorch-grad-cam and Captum, on the same input
tensor. The peers run on a twin whose ReLUs are ``nn.ReLU`` modules (their hooks need modules);
ours runs on the notebook-style module itself, with functional and in-place ReLUs. Maps are
compared on the network's grid, in each library's own scaling brought to ours (see
tests/explain/test_oracles.py for the conventions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import Deconvolution, GuidedBackprop, GuidedGradCam, Saliency
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import viewer
from tests.api.networks import ChestNetTwin, chest_net, fine_tuned_resnet18, smooth_input

pytestmark = pytest.mark.timeout(300)

METHODS = ["gradcam", "gradcam++", "gradient", "guided-backprop", "deconvnet", "guided-gradcam"]


@pytest.fixture(scope="module")
def case():
    net = chest_net()
    x = smooth_input(seed=3)
    with torch.no_grad():
        target = int(net.eval()(x).argmax())
    net.train()  # as a notebook leaves it mid-training: explain must not care, nor change it
    expl = viewer.explain(net, x, METHODS, target=target)
    return net, x, target, expl


def minmax(a) -> np.ndarray:
    a = np.asarray(a, np.float64)
    return (a - a.min()) / max(a.max() - a.min(), 1e-12)


def unit(a) -> np.ndarray:
    a = np.abs(np.asarray(a, np.float64))
    return a / max(a.max(), 1e-12)


def assert_close(got, expected, tol):
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    assert got.shape == expected.shape
    assert np.abs(expected).max() > 0, "degenerate test case: empty map"
    diff = np.abs(got - expected).max() / np.abs(expected).max()
    assert diff <= tol, f"max diff {diff:.2e} of peak"


@pytest.mark.parametrize(("method", "peer"), [("gradcam", GradCAM), ("gradcam++", GradCAMPlusPlus)])
def test_cam_equals_pytorch_grad_cam(case, method, peer):
    net, x, target, expl = case
    twin = ChestNetTwin(net).eval()
    with peer(model=twin, target_layers=[twin.down]) as cam:
        expected = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]
    # pytorch-grad-cam min-max scales the upsampled map; ours divides by the peak. Same shape of
    # map either way; OpenCV's float32 resize is the remaining difference.
    assert expl.grid(method).shape == tuple(x.shape[-2:])
    assert_close(minmax(expl.grid(method)), expected, tol=2e-3)


@pytest.mark.parametrize(
    ("method", "peer"),
    [("gradient", Saliency), ("guided-backprop", GuidedBackprop), ("deconvnet", Deconvolution)],
)
def test_input_gradients_equal_captum(case, method, peer):
    net, x, target, expl = case
    twin = ChestNetTwin(net).eval()
    expected = peer(twin).attribute(x.clone(), target=target).detach()[0].abs().amax(dim=0)
    assert_close(expl.grid(method), unit(expected), tol=1e-4)
    assert_close(expl[method], unit(expected), tol=1e-4)  # the image's grid is the input's here


def test_guided_gradcam_equals_captum(case):
    net, x, target, expl = case
    twin = ChestNetTwin(net).eval()
    expected = GuidedGradCam(twin, twin.down).attribute(x.clone(), target=target, interpolate_mode="bilinear")
    assert_close(expl.grid("guided-gradcam"), unit(expected.detach()[0].abs().amax(dim=0)), tol=1e-4)


def test_functional_relus_are_rerouted(case):
    """Guided backprop differs from the plain gradient: the functional and in-place ReLUs were
    governed by the guided rule, not skipped as module hooks would skip them."""
    _, _, _, expl = case
    assert not np.allclose(expl["guided-backprop"], expl["gradient"], atol=1e-3)


def test_fine_tuned_resnet18_equals_pytorch_grad_cam():
    net = fine_tuned_resnet18()
    x = smooth_input(seed=5, size=(64, 64))
    expl = viewer.explain(net, x, ["gradcam"], labels=["normal", "pneumonia", "covid"])
    target = expl.targets[0]
    assert target in ("normal", "pneumonia", "covid")
    with GradCAM(model=net.eval(), target_layers=[net.layer4]) as cam:
        expected = cam(input_tensor=x, targets=[ClassifierOutputTarget(expl.labels.index(target))])[0]
    assert_close(minmax(expl["gradcam"]), expected, tol=2e-3)
    with torch.no_grad():
        p = torch.softmax(net(x), dim=1)[0]
    assert expl.probabilities == pytest.approx(dict(zip(expl.labels, p.tolist(), strict=True)), abs=1e-6)
