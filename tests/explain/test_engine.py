"""The engine on real architectures and the bundled models: sharing, alignment, streaming, cancel,
determinism, and leaving the model exactly as it was. Also where the peer libraries go wrong."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch
from captum.attr import GuidedBackprop
from pytorch_grad_cam import GradCAM as PeerGradCAM
from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUModel
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from tests.explain.peers import (
    LAYERS,
    CleanDenseNet,
    pearson,
    random_input,
    random_network,
    same_snapshot,
    snapshot,
)
from viewer.explain import METHODS, Cancelled, ExplainContext, explain, get_method
from viewer.explain.registry import cnn_methods, methods_costing
from viewer.explain.relu_rules import routed_relus
from viewer.inference.catalog import bundled_models
from viewer.inference.model import LoadedModel
from viewer.io import discover
from viewer.io.loader import load_series
from viewer.resources import resource_path

SHARED = methods_costing("shared")  # served by the one recorded pass


def quick(method_id: str):
    return get_method(method_id, **METHODS[method_id].quick)  # small settings: every method runs


@pytest.fixture(scope="module")
def chest():
    model = LoadedModel.from_manifest(bundled_models()["cxr_resnet18"])
    image = load_series(discover([resource_path("samples", "dicom", "cxr_0001.dcm")]).series[0])
    return model, image


@pytest.fixture(scope="module")
def head_ct():
    model = LoadedModel.from_manifest(bundled_models()["ct_resnet18"])
    image = load_series(discover([resource_path("samples", "dicom", "ct_0001")]).series[0])
    return model, image


# --- the model is left as it was ----------------------------------------------------------------


@pytest.mark.parametrize("arch", ["resnet18", "densenet121", "mobilenet_v3_small"])
def test_every_method_leaves_the_network_untouched(arch):
    net = random_network(arch)
    x = random_input(size=64)
    before = snapshot(net)
    with torch.no_grad():
        out_before = net(x)
    # Score-CAM's and Ablation-CAM's 1,024 DenseNet channels take long; their own tests cover them.
    per_channel = ("scorecam", "scorecam-exact", "ablation-cam")
    for method_id in [m for m in cnn_methods() if not (arch == "densenet121" and m in per_channel)]:
        with ExplainContext(net, LAYERS[arch], x, task="multiclass", batch_size=16) as ctx:
            maps = quick(method_id).compute(ctx, [0, 3])
        assert maps.shape[:2] == (2, 1) and torch.isfinite(maps).all(), method_id
    with torch.no_grad():
        assert torch.equal(net(x), out_before)
    assert same_snapshot(before, snapshot(net))


def test_cancel_stops_promptly_and_leaves_no_trace():
    net = random_network("resnet18")
    x = random_input(size=64)
    before = snapshot(net)
    flag = threading.Event()
    calls = []

    def progress(fraction):
        calls.append(fraction)
        flag.set()  # cancel as soon as the first batch reports

    with (
        ExplainContext(
            net, "layer4", x, task="multiclass", batch_size=8, cancel=flag, progress=progress
        ) as ctx,
        pytest.raises(Cancelled),
    ):
        get_method("lime", samples=400).compute(ctx, [0])
    assert len(calls) == 1  # one batch of 8, not 50
    assert same_snapshot(before, snapshot(net))


def test_errors_inside_a_forward_remove_the_hooks():
    net = random_network("resnet18")
    before = snapshot(net)
    wrong_channels = torch.zeros(1, 1, 64, 64)
    with (
        ExplainContext(net, "layer4", wrong_channels, task="multiclass") as ctx,
        pytest.raises(RuntimeError, match="channels"),
    ):
        get_method("gradcam").compute(ctx, [0])
    with (
        ExplainContext(net, "no.such.layer", random_input(size=64), task="multiclass") as ctx,
        pytest.raises(AttributeError),
    ):
        get_method("gradcam").compute(ctx, [0])
    assert same_snapshot(before, snapshot(net))


def test_pytorch_grad_cam_guided_backprop_replaces_the_models_relus():
    """The peer swaps every nn.ReLU for its own module and back for *new* ReLU(inplace=False)
    objects: the model is changed for good. Ours routes calls instead and changes nothing."""
    net = random_network("resnet18")
    before = snapshot(net)
    GuidedBackpropReLUModel(net, device=torch.device("cpu"))(random_input(size=64), target_category=0)
    after = snapshot(net)
    assert not same_snapshot(before, after)
    assert net.relu.inplace is False  # torchvision built it with inplace=True


# --- where the peers are wrong on DenseNet -------------------------------------------------------


def test_densenet_trailing_relu_fools_pytorch_grad_cam_but_not_us():
    """torchvision DenseNet applies F.relu(inplace=True) to ``features``' output after the hook has
    stored it: pytorch-grad-cam then combines post-ReLU activations with pre-ReLU gradients."""
    net = random_network("densenet121")
    x = random_input(seed=3)
    target = int(net(x).argmax())

    def peer(model):
        with PeerGradCAM(model=model, target_layers=[model.features]) as cam:
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]

    on_torchvision, on_clean = peer(net), peer(CleanDenseNet(net))
    with ExplainContext(net, "features", x, task="multiclass") as ctx:
        ours = get_method("gradcam").compute(ctx, [target])[0, 0].clamp(min=0)
    with ExplainContext(CleanDenseNet(net), "features", x, task="multiclass") as ctx:
        clean = get_method("gradcam").compute(ctx, [target])[0, 0].clamp(min=0)
    assert torch.allclose(ours, clean, atol=1e-6 * float(clean.max()))
    assert np.abs(on_torchvision - on_clean).max() > 0.05  # the peer's map changes with the ReLU's form


def test_densenet_functional_relu_is_missed_by_captums_guided_backprop_but_not_by_us():
    net = random_network("densenet121")
    x = random_input(seed=3)
    target = int(net(x).argmax())
    with ExplainContext(net, "features", x, task="multiclass") as ctx:
        ours = ctx.input_grads(target, "guided")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Captum announces its ReLU hooks
        captum_torchvision = GuidedBackprop(net).attribute(x.clone(), target=target).detach()
        captum_clean = GuidedBackprop(CleanDenseNet(net)).attribute(x.clone(), target=target).detach()
    scale = float(captum_clean.abs().max())
    assert float((ours - captum_clean).abs().max()) < 1e-4 * scale
    assert float((captum_torchvision - captum_clean).abs().max()) > 0.01 * scale


@pytest.mark.parametrize(
    ("arch", "relus"),
    [("resnet18", 17), ("densenet121", 121), ("mobilenet_v2", 35), ("vgg11", 10), ("efficientnet_b0", 0)],
)
def test_every_executed_relu_like_call_is_routed(arch, relus):
    """Module, functional, in-place and ReLU6 (hardtanh) calls all count; SiLU does not."""
    net = random_network(arch)
    x = random_input(size=64).requires_grad_(True)
    with routed_relus() as rules:
        y = net(x)
    assert rules.relu_calls == relus
    with torch.no_grad():
        assert torch.equal(y, net(x))
    if relus == 0:  # EfficientNet: no ReLU, so every rule is the plain gradient
        plain = torch.autograd.grad(y[0, 0], x, retain_graph=True)[0]
        rules.set("guided")
        assert torch.equal(torch.autograd.grad(y[0, 0], x)[0], plain)


# --- sharing -------------------------------------------------------------------------------------


def count_calls(module: torch.nn.Module, kind: str):
    calls = []
    register = module.register_forward_pre_hook if kind == "forward" else module.register_full_backward_hook
    handle = register(lambda *args: calls.append(1))
    return calls, handle


def test_one_forward_serves_every_cam_and_gradient_map_of_every_label(chest):
    model, image = chest
    forwards, handle = count_calls(model.network, "forward")
    try:
        result = explain(model, image, SHARED, targets=list(model.manifest.labels))
    finally:
        handle.remove()
    assert len(result.maps) == len(SHARED) * len(model.manifest.labels)
    assert len(forwards) == 1


def test_cam_backward_stops_at_the_target_layer(chest):
    model, image = chest
    backwards, handle = count_calls(model.network.layer3, "backward")
    try:
        explain(model, image, ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam"])
        assert backwards == []
        explain(model, image, ["gradient"])
        assert backwards == [1]
    finally:
        handle.remove()


def test_hirescam_equals_cam_and_gradcam_on_a_gap_linear_head(chest):
    """For GAP -> linear heads the gradient is spatially constant: HiResCAM = Grad-CAM = CAM
    (Zhou et al.'s class activation map from the classifier weights)."""
    model, image = chest
    x, _ = model.prepare(image)
    with ExplainContext(model.network, "layer4", x[None], task="multilabel") as ctx:
        hires = get_method("hirescam").compute(ctx, [1])[0, 0]
        grad = get_method("gradcam").compute(ctx, [1])[0, 0]
        a = ctx.activations[0]
    w = model.network.fc.weight[1].detach()
    cam = torch.einsum("k,kuv->uv", w, a) / (a.shape[-1] * a.shape[-2])
    assert torch.allclose(hires, cam, rtol=1e-4, atol=1e-6)
    assert torch.allclose(grad, cam, rtol=1e-4, atol=1e-6)


def test_gradcam_plus_plus_follows_equation_19_with_zero_weight_where_gradients_vanish():
    rng = np.random.default_rng(0)
    a = rng.random((1, 4, 5, 5))
    g = rng.normal(size=(1, 4, 5, 5))
    g[rng.random(g.shape) < 0.3] = 0.0
    a[0, 2] = 0.0  # a dead channel: sum of A is 0, alpha must stay finite
    expected = np.zeros((5, 5))
    for k in range(4):
        s = a[0, k].sum()
        w = 0.0
        for i in range(5):
            for j in range(5):
                gij = g[0, k, i, j]
                if gij != 0:
                    alpha = gij**2 / (2 * gij**2 + s * gij**3 + 1e-6)
                    w += alpha * max(gij, 0.0)
        expected += w * a[0, k]
    got = get_method("gradcam++").combine(torch.from_numpy(a), torch.from_numpy(g))[0].numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=1e-10)


# --- the engine on images: alignment, conventions, streaming, determinism -----------------------


def test_maps_are_float32_on_the_native_grid_with_their_convention(chest):
    model, image = chest
    # Score-CAM over every channel (512 forwards here) shares the CAM path, which gradcam covers.
    result = explain(model, image, [quick(m) for m in cnn_methods() if m != "scorecam-exact"], seed=1)
    assert result.targets == ("consolidation",)
    for smap in result.maps:
        assert smap.array.shape == (1, image.rows, image.columns), smap.method
        assert smap.array.dtype == np.float32
        assert smap.grid.shape == (1, *model.manifest.input.size)
        low, high = float(smap.array.min()), float(smap.array.max())
        if smap.method == "lrp-alphabeta":  # beta 0: only positive contributions, one sign
            assert 0 <= low < high <= 1.0
        elif smap.convention == "signed":
            assert -1.0 <= low < 0 < high <= 1.0, smap.method
        else:
            assert low >= 0.0 and 0.5 < high <= 1.0, smap.method
        assert smap.scale > 0


def test_ct_series_gives_a_volume_of_maps(head_ct):
    model, image = head_ct
    frames = [8, 9, 10, 11]
    result = explain(
        model, image, ["gradcam", "guided-backprop"], frames=frames, targets=["subdural"], frame_chunk=3
    )
    assert result.probabilities.shape == (4, len(model.manifest.labels))
    for smap in result.maps:
        assert smap.array.shape == (4, image.rows, image.columns)
        assert smap.frames == tuple(frames)
        assert smap.frame(10).shape == (image.rows, image.columns)
    # Chunked and single-batch runs agree.
    single = explain(model, image, ["gradcam"], frames=frames, targets=["subdural"])
    np.testing.assert_allclose(single.maps[0].array, result.maps[0].array, atol=1e-5)


def test_results_stream_one_method_at_a_time_with_progress(chest):
    model, image = chest
    events = []
    methods = ["gradcam", "guided-backprop", quick("rise"), quick("lime")]
    explain(
        model,
        image,
        methods,
        on_result=lambda m: events.append(("map", m.method)),
        on_progress=lambda m, f: events.append(("progress", m, f)),
        batch_size=8,
    )
    maps = [e[1] for e in events if e[0] == "map"]
    assert maps == ["gradcam", "guided-backprop", "rise", "lime"]
    for method in ("rise", "lime"):
        fractions = [e[2] for e in events if e[0] == "progress" and e[1] == method]
        assert len(fractions) >= 3 and fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    # Each map arrives after its own progress and before the next method's.
    first_lime = events.index(next(e for e in events if e[:2] == ("progress", "lime")))
    assert events.index(("map", "rise")) < first_lime


@pytest.mark.parametrize("method_id", ["lime", "rise", "smoothgrad"])
def test_random_methods_are_deterministic_for_a_seed(chest, method_id):
    model, image = chest
    a = explain(model, image, [quick(method_id)], seed=3).maps[0].array
    b = explain(model, image, [quick(method_id)], seed=3).maps[0].array
    c = explain(model, image, [quick(method_id)], seed=4).maps[0].array
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_explain_works_inside_inference_mode(chest):
    """A caller (a GUI worker, a notebook) may hold inference mode: gradients still work."""
    model, image = chest
    with torch.inference_mode():
        result = explain(model, image, ["gradcam", "guided-backprop", quick("integrated-gradients")])
    assert all(float(m.array.max()) > 0.5 for m in result.maps)


def test_unknown_targets_and_methods_are_named(chest):
    model, image = chest
    with pytest.raises(KeyError, match="atelectasis"):
        explain(model, image, ["gradcam"], targets=["atelectasis"])
    with pytest.raises(KeyError, match="gradcam3"):
        explain(model, image, ["gradcam3"])
    with pytest.raises(TypeError, match="samplez"):
        get_method("lime", samplez=3)


def test_class_sensitive_maps_differ_between_labels_and_agnostic_ones_do_not(chest):
    model, image = chest
    result = explain(model, image, ["gradcam", "eigencam"], targets=["consolidation", "cardiomegaly"])
    gradcam = [m.array for m in result.maps if m.method == "gradcam"]
    eigen = [m for m in result.maps if m.method == "eigencam"]
    assert pearson(*gradcam) < 0.9
    assert np.array_equal(eigen[0].array, eigen[1].array)
    assert not eigen[0].class_sensitive and eigen[0].notes
