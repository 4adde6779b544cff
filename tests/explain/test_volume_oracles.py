"""3-D maps against the peers on 3-D networks with fixed random weights: MONAI's ``GradCAM`` on
a 3-D DenseNet-121; pytorch-grad-cam's 3-D CAM family and Captum's gradients, Integrated
Gradients, Guided Backprop, Grad-CAM and Occlusion on a small 3-D CNN. (MONAI's ``GradCAMpp``
sums A g^3 over the grid where the paper's eq. 19, pytorch-grad-cam and we take sum(A) g^3.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import GuidedBackprop, IntegratedGradients, LayerGradCam, Occlusion, Saliency
from torch import nn

from tests.explain.test_oracles import assert_close
from viewer.explain import ExplainContext, get_method
from viewer.explain.engine import scale_to_convention

pytestmark = pytest.mark.timeout(300)


def smooth_volume(seed: int, size: tuple[int, int, int], channels: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(1, channels, *(max(2, n // 8) for n in size), generator=g)
    x = F.interpolate(low, size=size, mode="trilinear", align_corners=False)
    return x + 0.3 * torch.randn(1, channels, *size, generator=g)


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv3d(1, 8, 3, padding=1),
        nn.BatchNorm3d(8),
        nn.ReLU(),
        nn.MaxPool3d(2),
        nn.Conv3d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(16, 3),
    )
    g = torch.Generator().manual_seed(seed + 1)
    net[1].running_mean.copy_(torch.randn(8, generator=g) * 0.1)
    net[1].running_var.copy_(torch.rand(8, generator=g) * 0.5 + 0.75)
    return net.eval()


@pytest.fixture(scope="module")
def cnn():
    net = small_cnn()
    x = smooth_volume(3, (16, 24, 24))
    with torch.no_grad():
        target = int(net(x).argmax())
    return net, x, target


def ours(net, layer, x, method_id: str, target: int, **params) -> torch.Tensor:
    """Our raw map ``(1, *grid)`` for ``target``."""
    with ExplainContext(net, layer, x, task="multiclass") as ctx:
        return get_method(method_id, **params).compute(ctx, [target])[0].detach()


def test_gradcam_3d_equals_captum(cnn):
    net, x, target = cnn
    got = ours(net, "5", x, "gradcam", target).clamp(min=0)
    assert got.shape == (1, 8, 12, 12) and float(got.max()) > 0
    expected = LayerGradCam(net, net[5]).attribute(x, target=target, relu_attributions=True)[:, 0]
    assert_close(got, expected.detach(), tol=1e-5)


@pytest.mark.parametrize(
    ("method_id", "peer"),
    [
        ("gradcam", "GradCAM"),
        ("gradcam++", "GradCAMPlusPlus"),
        ("layercam", "LayerCAM"),
        ("hirescam", "HiResCAM"),
    ],
)
def test_cam_family_3d_equals_pytorch_grad_cam(cnn, method_id, peer):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from scipy.ndimage import zoom

    net, x, target = cnn
    got = ours(net, "5", x, method_id, target).clamp(min=0)[0].numpy()
    with getattr(pytorch_grad_cam, peer)(model=net, target_layers=[net[5]]) as cam:
        expected = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]

    # pytorch-grad-cam: min-max, cubic zoom (scipy) to the input, its overshoot below 0 cut, min-max.
    def unit(a: np.ndarray) -> np.ndarray:
        a = a - a.min()
        return a / (1e-7 + a.max())

    assert float(got.max()) > 0
    assert_close(unit(np.maximum(zoom(unit(np.float32(got)), [2, 2, 2]), 0)), expected, tol=1e-4)


def test_input_gradients_3d_equal_captum(cnn):
    net, x, target = cnn
    expected = Saliency(net).attribute(x.clone(), target=target, abs=True).detach().amax(dim=1)
    assert_close(ours(net, "5", x, "gradient", target), expected, tol=1e-5)
    guided = GuidedBackprop(net).attribute(x.clone(), target=target).detach().abs().amax(dim=1)
    assert float(guided.max()) > 0
    assert_close(ours(net, "5", x, "guided-backprop", target), guided, tol=1e-4)


def test_integrated_gradients_3d_equal_captum(cnn):
    net, x, target = cnn
    expected = IntegratedGradients(net).attribute(
        x.clone(), baselines=torch.zeros_like(x), target=target, n_steps=20, method="gausslegendre"
    )
    got = ours(net, "5", x, "integrated-gradients", target, steps=20, baseline="zeros")
    assert_close(got, expected.detach().sum(dim=1), tol=1e-4)


def test_occlusion_3d_equals_captum(cnn):
    net, x, target = cnn

    def probabilities(inputs):
        return torch.softmax(net(inputs), dim=-1)

    # Windows that tile every axis exactly: Captum and we then cover the same voxels.
    expected = Occlusion(probabilities).attribute(
        x.clone(), sliding_window_shapes=(1, 8, 8, 8), strides=(1, 4, 8, 8), baselines=0.0, target=target
    )
    got = ours(net, "5", x, "occlusion", target, window=8, stride=4)
    reference = Occlusion(probabilities).attribute(
        x.clone(), sliding_window_shapes=(1, 8, 8, 8), strides=(1, 4, 4, 4), baselines=0.0, target=target
    )
    assert_close(got, reference[:, 0].detach(), tol=1e-4)
    assert not torch.allclose(expected, reference)  # the stride matters: the check can fail


@pytest.fixture(scope="module")
def densenet():
    pytest.importorskip("monai")
    from monai.networks.nets import DenseNet121

    torch.manual_seed(0)
    net = DenseNet121(spatial_dims=3, in_channels=1, out_channels=3).eval()
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
    x = smooth_volume(5, (64, 64, 64))
    with torch.no_grad():
        target = int(net(x).argmax())
    return net, x, target


def test_gradcam_on_a_3d_monai_densenet_equals_monais(densenet):
    import monai.visualize

    net, x, target = densenet
    layer = "class_layers.relu"  # MONAI's own documented layer for its DenseNet
    raw = ours(net, layer, x, "gradcam", target)
    assert raw.shape == (1, 2, 2, 2)
    # Our engine's model-grid map: rectified and scaled, trilinear to the input (align_corners=False).
    scaled, _ = scale_to_convention(raw, "unit")
    up = F.interpolate(scaled[None], size=x.shape[2:], mode="trilinear", align_corners=False)[0, 0]
    up = (up - up.min()) / (up.max() - up.min())
    cam = monai.visualize.GradCAM(nn_module=net, target_layers=layer)
    # MONAI's default normalizer maps (min, max) to (1, 0), as its documentation says: undone here.
    expected = 1.0 - cam(x.clone(), class_idx=target)[0, 0].detach()
    assert float(expected.max()) > 0 and float(raw.std()) > 0
    assert_close(up, expected, tol=1e-5)
