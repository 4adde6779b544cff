"""Our maps against Captum and pytorch-grad-cam on torchvision networks with fixed random weights.

On DenseNet the oracle runs on ``CleanDenseNet`` (the same function with its trailing functional
ReLU made a module): the peers' hooks miss that ReLU or read activations it overwrote, and the
tests at the end of this file show exactly that.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    GuidedGradCam,
    IntegratedGradients,
    LayerGradCam,
    Occlusion,
    Saliency,
)
from pytorch_grad_cam import (
    AblationCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

from tests.explain.peers import ARCHS, LAYERS, SIZE, oracle_network, pearson, random_input, random_network
from viewer.explain import ExplainContext, get_method
from viewer.explain.gradients import baseline_input

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", params=ARCHS)
def case(request):
    arch = request.param
    net = random_network(arch)
    x = random_input(seed=3)
    with torch.no_grad():
        target = int(net(x).argmax())
    return arch, net, x, target


def context(case, **kwargs) -> ExplainContext:
    arch, net, x, _ = case
    return ExplainContext(net, LAYERS[arch], x, task="multiclass", **kwargs)


def ours(case, method_id: str, **params) -> torch.Tensor:
    """Our raw map ``(frames, h, w)`` for the case's target."""
    with context(case) as ctx:
        return get_method(method_id, **params).compute(ctx, [case[3]])[0].detach()


def upsampled_unit(raw: torch.Tensor) -> np.ndarray:
    """ReLU, then bilinear to the input and min-max: what pytorch-grad-cam returns."""
    up = F.interpolate(raw.clamp(min=0)[:, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    up = up[:, 0] - up.amin()
    return (up / up.amax().clamp(min=1e-12)).numpy()


def grad_cam_lib(case, cls, **kwargs) -> np.ndarray:
    arch, net, x, target = case
    model = oracle_network(arch, net)
    layer = model.get_submodule(LAYERS[arch])
    with cls(model=model, target_layers=[layer], **kwargs) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])


def assert_close(a, b, tol=1e-4):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.abs(b).max(), 1e-12)
    assert np.abs(a - b).max() <= tol * scale, f"max diff {np.abs(a - b).max() / scale:.2e} of peak"


# --- CAM family ---------------------------------------------------------------------------------


def test_gradcam_equals_captum(case):
    arch, net, x, target = case
    expected = LayerGradCam(oracle_network(arch, net), oracle_network(arch, net).get_submodule(LAYERS[arch]))
    expected = expected.attribute(x, target=target, relu_attributions=True)[:, 0].detach()
    got = ours(case, "gradcam").clamp(min=0)
    assert float(expected.max()) > 0, "degenerate test case: empty map"
    assert_close(got, expected)


@pytest.mark.parametrize(
    ("method_id", "peer"),
    [
        ("gradcam", GradCAM),
        ("gradcam++", GradCAMPlusPlus),
        ("xgradcam", XGradCAM),
        ("layercam", LayerCAM),
        ("hirescam", HiResCAM),
    ],
)
def test_cam_family_equals_pytorch_grad_cam(case, method_id, peer):
    expected = grad_cam_lib(case, peer)
    got = upsampled_unit(ours(case, method_id))
    assert expected.max() > 0, "degenerate test case: empty map"
    assert_close(got, expected, tol=2e-3)  # pytorch-grad-cam resizes with OpenCV in float32


@pytest.mark.parametrize("arch", ["resnet18", pytest.param("vgg11", marks=pytest.mark.slow)])
def test_ablation_cam_equals_pytorch_grad_cam(arch):
    """On layers whose activations are non-negative (after a ReLU), where pytorch-grad-cam zeroes
    the ablated channel as the paper does; elsewhere (DenseNet's features, MobileNet's Hardswish)
    it subtracts 1e7 instead (see the method). One forward per channel on both sides: VGG's 512
    channels are slow, ResNet's run by default."""
    net, x = random_network(arch), random_input(seed=3)
    case = (arch, net, x, 0)
    with context(case) as ctx:
        assert float(ctx.activations.amin()) >= 0  # after a ReLU: both sides zero the channel
        logits = ctx.logits[0]
    model = oracle_network(arch, net)
    for target in torch.argsort(logits, descending=True).tolist():
        with AblationCAM(
            model=model, target_layers=[model.get_submodule(LAYERS[arch])], batch_size=64
        ) as cam:
            expected = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])
        if expected.max() > 0:  # else every weight is negative for this label: both maps are empty
            break
    else:
        pytest.fail("degenerate test case: every label's map is empty")
    got = upsampled_unit(ours((*case[:3], target), "ablation-cam"))
    assert_close(got, expected, tol=2e-3)


def test_eigencam_is_pytorch_grad_cams_projection_up_to_its_arbitrary_sign(case):
    with context(case) as ctx:
        activations = ctx.activations.numpy()
        got = get_method("eigencam").compute(ctx, [case[3]])[0]
    expected = get_2d_projection(activations.copy())
    assert abs(pearson(got, expected)) > 0.9999
    # Our sign makes the strongest response positive.
    assert got.max() >= abs(got.min())


# The peers that take half a minute each run on ResNet-18 by default, on all four with -m slow.
@pytest.mark.slow_for("case", [arch for arch in ARCHS if arch != "resnet18"])
def test_scorecam_equals_pytorch_grad_cam_in_its_variant(case):
    expected = grad_cam_lib(case, ScoreCAM)
    got = upsampled_unit(ours(case, "scorecam-exact", weights="softmax-channels"))
    assert expected.max() > 0, "degenerate test case: empty map"
    assert_close(got, expected, tol=2e-3)


# --- gradient family --------------------------------------------------------------------------


@pytest.mark.parametrize(("rule", "peer"), [("guided", GuidedBackprop), ("deconvnet", Deconvolution)])
def test_modified_relu_backward_equals_captum(case, rule, peer):
    arch, net, x, target = case
    expected = peer(oracle_network(arch, net)).attribute(x.clone(), target=target).detach()
    with context(case) as ctx:
        got = ctx.input_grads(target, rule)
    assert float(expected.abs().max()) > 0
    assert_close(got, expected, tol=1e-4)


def test_gradient_equals_captum_saliency(case):
    _, net, x, target = case
    expected = Saliency(net).attribute(x.clone(), target=target, abs=True).detach().amax(dim=1)
    assert_close(ours(case, "gradient"), expected, tol=1e-5)


def test_guided_gradcam_equals_captum(case):
    arch, net, x, target = case
    model = oracle_network(arch, net)
    peer = GuidedGradCam(model, model.get_submodule(LAYERS[arch]))
    expected = peer.attribute(x.clone(), target=target, interpolate_mode="bilinear").detach()
    assert_close(ours(case, "guided-gradcam"), expected.abs().amax(dim=1), tol=1e-4)


@pytest.mark.parametrize("baseline", ["blur", "zeros"])
def test_integrated_gradients_equals_captum(case, baseline):
    _, net, x, target = case
    base = baseline_input(x, baseline)
    expected = IntegratedGradients(net).attribute(
        x.clone(), baselines=base, target=target, n_steps=50, method="gausslegendre"
    )
    assert_close(
        ours(case, "integrated-gradients", baseline=baseline), expected.detach().sum(dim=1), tol=1e-3
    )


def test_integrated_gradients_is_complete(case):
    """Sum of attributions = F(x) - F(baseline) within a few per cent (Sundararajan et al.)."""
    _, net, x, target = case
    got = ours(case, "integrated-gradients", steps=100, baseline="zeros")
    with torch.no_grad():
        delta = float(net(x)[0, target] - net(torch.zeros_like(x))[0, target])
    assert float(got.sum()) == pytest.approx(delta, rel=0.05, abs=1e-3 * abs(delta) + 1e-4)


def test_smoothgrad_is_the_mean_gradient_over_its_noise(case):
    _, net, x, target = case
    samples, noise = 8, 0.15
    with context(case, seed=5) as ctx:
        got = get_method("smoothgrad", samples=samples, noise=noise).compute(ctx, [target])[0]
        # The same draw the method makes, evaluated with Captum's plain gradient.
        g = ctx.generator(salt=17)
    sigma = noise * float(x.max() - x.min())
    eps = torch.randn((samples, *x.shape[1:]), generator=g) * sigma
    grads = Saliency(net).attribute(x + eps, target=target, abs=False).detach()
    assert_close(got, grads.mean(dim=0, keepdim=True).abs().amax(dim=1), tol=1e-4)


# --- perturbation family ----------------------------------------------------------------------


def test_occlusion_equals_captum(case):
    _, net, x, target = case

    def probabilities(inputs):
        return torch.softmax(net(inputs), dim=-1)

    expected = Occlusion(probabilities).attribute(
        x.clone(), sliding_window_shapes=(3, 32, 32), strides=(3, 16, 16), baselines=0.0, target=target
    )
    got = ours(case, "occlusion", window=32, stride=16)
    assert_close(got, expected[:, 0].detach(), tol=1e-4)
    assert torch.allclose(expected[:, 0], expected[:, 2])  # the window spans every channel


@pytest.mark.slow_for("case", ["vgg11"])  # the other three (DenseNet included) run by default
def test_lime_equals_lime_image_with_the_same_superpixels(case):
    lime_image = pytest.importorskip("lime.lime_image")
    _, net, x, target = case
    method = get_method("lime", samples=300, converge=False)  # lime_image uses every sample
    with context(case, seed=11) as ctx:
        from viewer.explain.perturbation import superpixels

        segments = superpixels(x[0], 40)
        got = method.coefficients(ctx, x[0], segments, [target])[:, 0]

    def classifier(images: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            return torch.softmax(net(batch), dim=-1).numpy()

    explainer = lime_image.LimeImageExplainer(kernel_width=0.25, random_state=11)
    explanation = explainer.explain_instance(
        x[0].permute(1, 2, 0).double().numpy(),
        classifier,
        labels=(target,),
        top_labels=None,
        hide_color=None,
        num_samples=300,
        batch_size=10,
        segmentation_fn=lambda image: segments,
        random_seed=11,
    )
    expected = np.zeros_like(got)
    for feature, weight in explanation.local_exp[target]:
        expected[feature] = weight
    assert_close(got, expected, tol=1e-4)  # float32 forwards in batches of different sizes


@pytest.mark.parametrize("arch", ["efficientnet_b0", "mobilenet_v2"])
def test_guided_backprop_on_non_relu_networks(arch):
    """EfficientNet has no ReLU (SiLU): every rule is the plain gradient, as in Captum. MobileNetV2's
    ReLU6 is ReLU-like for us (guided rule inside 0 < x < 6) but invisible to Captum, which only
    modifies ``nn.ReLU``: there the two differ by design."""
    net = random_network(arch)
    x = random_input(seed=1, size=64)
    target = int(net(x).argmax())
    expected = GuidedBackprop(net).attribute(x.clone(), target=target).detach()
    with ExplainContext(net, LAYERS.get(arch, "features"), x, task="multiclass") as ctx:
        guided = ctx.input_grads(target, "guided")
        plain = ctx.input_grads(target, "gradient")
    if arch == "efficientnet_b0":
        assert_close(guided, expected, tol=1e-5)
        assert torch.equal(guided, plain)
    else:
        assert not torch.allclose(guided, expected, atol=1e-3 * float(expected.abs().max()))
        assert (guided != plain).any()
