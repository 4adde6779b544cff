"""Maps of segmentation networks: a region's score is the sum of its label's logits over it.

Checked against the peers on the same seeded networks and tensors: pytorch-grad-cam with its
``SemanticSegmentationTarget`` (``(model_output[category] * mask).sum()``, pytorch_grad_cam/utils/
model_targets.py) and Captum with a forward function that sums the label's logits over the mask,
as Captum's segmentation tutorial does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, Occlusion, Saliency
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

from tests.explain.peers import random_input
from tests.explain.segmenters import CHANNELS, LAYERS, NETWORKS
from viewer.explain import ExplainContext, get_method
from viewer.explain.targets import PREFIX, REGION_SCORE, Region, RegionScores, component_at

pytestmark = pytest.mark.timeout(300)
SIZE = 96


@pytest.fixture(scope="module", params=sorted(NETWORKS))
def case(request):
    return make_case(request.param)


def make_case(name: str):
    """A network, an input, a label the network assigns to some pixels and its own mask of it."""
    net = NETWORKS[name]()
    x = random_input(seed=3, size=SIZE, channels=CHANNELS[name])
    with torch.no_grad():
        winner = net(x).argmax(dim=1)[0]
    counts = torch.bincount(winner.flatten(), minlength=3)
    present = counts.clone().masked_fill_(counts == 0, SIZE * SIZE + 1)
    label = int(present.argmin())  # the smallest region the network assigns
    mask = (winner == label).float()
    if mask.all():  # random weights may give one label everywhere: a region drawn by hand instead
        mask = torch.zeros_like(mask)
        mask[SIZE // 4 : SIZE // 2, SIZE // 3 : SIZE - 8] = 1
    return name, net, x, label, mask


def context(case, **kwargs) -> ExplainContext:
    name, net, x, label, mask = case
    return ExplainContext(
        RegionScores(net, [Region(label, mask)]),
        PREFIX + LAYERS[name],
        x,
        task="segmentation",
        head=REGION_SCORE,
        **kwargs,
    )


def ours(case, method_id: str, **params) -> torch.Tensor:
    with context(case) as ctx:
        return get_method(method_id, **params).compute(ctx, [0])[0].detach()


def region_sum(case):
    """Captum's forward: the label's logits summed over the mask, one score per input."""
    _, net, _, label, mask = case
    return lambda inputs: (net(inputs)[:, label] * mask).flatten(1).sum(dim=1, keepdim=True)


def upsampled_unit(raw: torch.Tensor) -> np.ndarray:
    up = F.interpolate(raw.clamp(min=0)[:, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    up = up[:, 0] - up.amin()
    return (up / up.amax().clamp(min=1e-12)).numpy()


def assert_close(a, b, tol=1e-4):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.abs(b).max(), 1e-12)
    assert np.abs(a - b).max() <= tol * scale, f"max diff {np.abs(a - b).max() / scale:.2e} of peak"


def test_the_region_score_is_semantic_segmentation_target(case):
    _, net, x, label, mask = case
    with torch.no_grad():
        expected = SemanticSegmentationTarget(label, mask.numpy())(net(x)[0])
    with context(case) as ctx:
        assert float(ctx.logits[0, 0]) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize(
    ("method_id", "peer"),
    [("gradcam", GradCAM), ("gradcam++", GradCAMPlusPlus), ("xgradcam", XGradCAM), ("hirescam", HiResCAM)],
)
def test_cam_family_equals_pytorch_grad_cam(case, method_id, peer):
    name, net, x, label, mask = case
    with peer(model=net, target_layers=[net.get_submodule(LAYERS[name])]) as cam:
        expected = cam(input_tensor=x, targets=[SemanticSegmentationTarget(label, mask.numpy())])
    assert expected.max() > 0, "degenerate test case: empty map"
    assert_close(upsampled_unit(ours(case, method_id)), expected, tol=2e-3)  # OpenCV resizes in float32


def test_gradient_equals_captum_saliency(case):
    x = case[2]
    expected = Saliency(region_sum(case)).attribute(x.clone(), target=0, abs=True).detach().amax(dim=1)
    assert float(expected.max()) > 0
    assert_close(ours(case, "gradient"), expected, tol=1e-5)


@pytest.mark.slow_for("case", ["deeplab"])  # 30 s on two cores; the U-Net case runs by default
def test_integrated_gradients_equals_captum(case):
    x = case[2]
    expected = IntegratedGradients(region_sum(case)).attribute(
        x.clone(), baselines=torch.zeros_like(x), target=0, n_steps=50, method="gausslegendre"
    )
    got = ours(case, "integrated-gradients", baseline="zeros")
    assert_close(got, expected.detach().sum(dim=1), tol=1e-3)


def test_occlusion_equals_captum():
    # On the U-Net only: with random weights DeepLab's summed logits move by ~1e-5 of their size
    # when a patch is blanked, float32 rounding of a large sum on both sides, not a map to compare.
    case = make_case("unet")
    x = case[2]
    channels = x.shape[1]
    expected = Occlusion(region_sum(case)).attribute(
        x.clone(), sliding_window_shapes=(channels, 16, 16), strides=(channels, 8, 8), baselines=0.0, target=0
    )
    got = ours(case, "occlusion", window=16, stride=8)
    assert_close(got, expected[:, 0].detach(), tol=1e-4)


def test_a_clicked_component_is_the_connected_region_under_the_click():
    mask = np.zeros((12, 12), bool)
    mask[1:4, 1:4] = True
    mask[4, 4] = True  # touches the first blob diagonally: 8-connected, the same component
    mask[8:11, 7:11] = True
    first = component_at(mask, 2, 2)
    assert first.sum() == 10 and first[4, 4] and not first[9, 9]
    assert component_at(mask, 9, 8).sum() == 12
    assert not component_at(mask, 6, 0).any()  # outside the mask: no region
