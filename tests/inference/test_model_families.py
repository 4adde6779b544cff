"""Networks of every family a researcher brings: torchvision transformers, timm, MONAI,
TorchXRayVision, ONNX (a Keras export's layout and a PyTorch export), TorchScript. Each is built
here with seeded random weights in the layout its library saves (nothing downloaded), loaded from
a manifest as the README writes it, and compared with the library's own forward pass."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import onnxruntime
import pytest
import timm
import torch
import torchvision
import torchxrayvision as xrv
from monai.networks.nets import DenseNet121
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from tests.inference.layouts import assert_same_probabilities, seeded, users_output, write_manifest
from viewer.explain import explain
from viewer.explain.engine import UnsupportedMethod
from viewer.inference.manifest import ManifestError
from viewer.inference.model import LoadedModel
from viewer.io import discover, load_series
from viewer.resources import resource_path

LABELS = ["a", "b", "c"]
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def film():
    return load_series(discover([resource_path("samples", "dicom", "cxr_0002.dcm")]).series[0])


def assert_native_map(loaded: LoadedModel, film, method: str = "gradcam") -> np.ndarray:
    """The maps of every label lie on the film's own grid; with random weights a label's map may be
    all negative (nothing after the ReLU), but not every label's. Returns the first label's."""
    maps = explain(loaded, film, [method], targets=list(loaded.manifest.labels)).maps
    for smap in maps:
        assert smap.array.shape == (1, *film.pixels.shape[-2:]) and np.isfinite(smap.array).all()
    assert max(float(smap.array.max()) for smap in maps) > 0
    return maps[0].array[0]


@pytest.mark.parametrize(
    ("arch", "size", "kwargs", "layer", "layout"),
    [
        ("vit_b_16", 112, "kwargs = { image_size = 112 }", "encoder.layers.encoder_layer_11.ln_1", "tokens"),
        ("swin_t", 64, "", "permute", "nchw"),
        ("maxvit_t", 224, "", "blocks.3", "nchw"),
    ],
)
def test_torchvision_transformers(tmp_path, film, arch, size, kwargs, layer, layout):
    extra = {"image_size": size} if kwargs else {}
    users = seeded(torchvision.models.get_model(arch, weights=None, num_classes=3, **extra))
    torch.save(nn.DataParallel(users).state_dict(), tmp_path / "best.pth")
    path = write_manifest(
        tmp_path, arch, "best.pth", labels=LABELS, in_channels=3, size=(size, size), network=kwargs
    )
    loaded = LoadedModel.from_manifest(path, device="cpu")
    assert (loaded.target_layer, loaded.grid.layout) == (layer, layout)
    assert_same_probabilities(loaded, users, film, torch.sigmoid)
    assert_native_map(loaded, film)


def test_timm_cnn_from_a_lightning_checkpoint(tmp_path, film):
    users = seeded(timm.create_model("resnet18", pretrained=False, num_classes=3, in_chans=1))
    state = {f"model.{k}": v for k, v in users.state_dict().items()}
    torch.save({"epoch": 3, "global_step": 900, "state_dict": state}, tmp_path / "epoch=3.ckpt")
    path = write_manifest(tmp_path, "timm:resnet18", "epoch=3.ckpt", labels=LABELS, in_channels=1)
    loaded = LoadedModel.from_manifest(path, device="cpu")
    assert "prefix model." in " ".join(loaded.checkpoint.renames)
    assert loaded.target_layer == "layer4"
    assert_same_probabilities(loaded, users, film, torch.sigmoid)
    assert_native_map(loaded, film)


@pytest.mark.parametrize(
    ("name", "prefix"), [("vit_tiny_patch16_224", 1), ("deit_tiny_distilled_patch16_224", 2)]
)
def test_timm_vision_transformer(tmp_path, film, name, prefix):
    users = seeded(timm.create_model(name, pretrained=False, num_classes=3, img_size=64))
    torch.save(users.state_dict(), tmp_path / "vit.pth")
    path = write_manifest(tmp_path, f"timm:{name}", "vit.pth", labels=LABELS, task="multiclass")
    loaded = LoadedModel.from_manifest(path, device="cpu")
    assert loaded.target_layer == "blocks.11.norm1"
    assert (loaded.grid.rows, loaded.grid.cols, loaded.grid.prefix) == (4, 4, prefix)
    assert_same_probabilities(loaded, users, film, lambda z: torch.softmax(z, -1))
    assert_native_map(loaded, film)
    notes = explain(loaded, film, ["gradcam"], targets=["a"]).get("gradcam", "a").notes
    assert any("4 x 4 patch tokens" in note for note in notes)


def test_monai_densenet121(tmp_path, film):
    users = seeded(DenseNet121(spatial_dims=2, in_channels=1, out_channels=3))
    torch.save(users.state_dict(), tmp_path / "best_metric_model.pth")
    path = write_manifest(
        tmp_path,
        "monai:DenseNet121",
        "best_metric_model.pth",
        labels=LABELS,
        in_channels=1,
        network="kwargs = { spatial_dims = 2 }\n",
    )
    loaded = LoadedModel.from_manifest(path, device="cpu")
    assert loaded.target_layer == "class_layers.relu"
    assert_same_probabilities(loaded, users, film, torch.sigmoid)
    assert_native_map(loaded, film)


XRV = list(xrv.datasets.default_pathologies)


def xrv_manifest(tmp_path, weights: str, network: str = "") -> str:
    return write_manifest(
        tmp_path,
        "xrv:densenet121",
        weights,
        labels=XRV,
        in_channels=1,
        size=(224, 224),
        network=network,
        inputs='resize = "center-crop"\n',
    ).as_posix()


def test_torchxrayvision_densenet_as_its_weights_file_is_saved(tmp_path, film):
    """TorchXRayVision's DenseNet weights files are whole pickled ``xrv.models.DenseNet`` objects;
    they load through the restricted unpickler (TorchXRayVision's classes are allowed)."""
    users = seeded(xrv.models.DenseNet(weights=None))
    torch.save(users, tmp_path / "nih-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt")
    name = "nih-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"
    loaded = LoadedModel.from_manifest(xrv_manifest(tmp_path, name), device="cpu")
    assert loaded.checkpoint.whole_model is not None
    users.apply_sigmoid = True
    assert_same_probabilities(loaded, users, film)
    assert any("[-1024, 1024]" in note for note in loaded.notes)
    assert_native_map(loaded, film)

    # With its operating-point calibration, as xrv.models.DenseNet(weights="densenet121-res224-all").
    calibrated = LoadedModel.from_manifest(
        xrv_manifest(tmp_path, name, 'kwargs = { calibration = "all" }\n'), device="cpu"
    )
    users.op_threshs = torch.tensor(xrv.models.model_urls["all"]["op_threshs"])
    ours = assert_same_probabilities(calibrated, users, film)
    assert not np.allclose(ours, loaded.predict(film).probabilities[0])
    assert "calibration" in calibrated.head.describe()


# --- ONNX ---------------------------------------------------------------------------------------


def keras_like_onnx(path, channels: int = 3, classes: int = 3) -> None:
    """The graph tf2onnx writes for a small Keras CNN: input ``(N, H, W, C)`` named ``input_1``,
    a Transpose to channels first, Conv/Relu blocks, GlobalAveragePool, the Dense layer as
    MatMul + Add, and its sigmoid activation as the last node."""
    rng = np.random.default_rng(0)

    def weight(name, *shape):
        return numpy_helper.from_array((rng.normal(size=shape) * 0.3).astype(np.float32), name)

    inits = [
        weight("conv1/kernel", 8, channels, 3, 3),
        weight("conv1/bias", 8),
        weight("conv2/kernel", 16, 8, 3, 3),
        weight("conv2/bias", 16),
        weight("dense/kernel", 16, classes),
        weight("dense/bias", classes),
    ]
    nodes = [
        helper.make_node("Transpose", ["input_1"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node(
            "Conv", ["nchw", "conv1/kernel", "conv1/bias"], ["c1"], pads=[1] * 4, strides=[2, 2]
        ),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "conv2/kernel", "conv2/bias"], ["c2"], pads=[1] * 4, strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("MatMul", ["flat", "dense/kernel"], ["mm"]),
        helper.make_node("Add", ["mm", "dense/bias"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["dense"]),
    ]
    graph = helper.make_graph(
        nodes,
        "keras_model",
        [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["unk__0", 64, 64, channels])],
        [helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["unk__1", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="tf2onnx")
    model.ir_version = 8
    onnx.save(model, str(path))


def onnxruntime_output(path, x: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_onnx_export_of_a_keras_model(tmp_path, film):
    keras_like_onnx(tmp_path / "model.onnx")
    path = write_manifest(tmp_path, "onnx", "model.onnx", labels=LABELS, in_channels=3)
    loaded = LoadedModel.from_manifest(path, device="cpu")
    assert (loaded.head.activation, loaded.head.source) == ("sigmoid", "the ONNX graph's last node")
    assert any("channels-last" in note for note in loaded.notes)
    x, _ = loaded.prepare(film)
    expected = onnxruntime_output(tmp_path / "model.onnx", x.permute(1, 2, 0)[None].numpy())
    np.testing.assert_allclose(loaded.predict(film).probabilities[0], expected[0], rtol=1e-4, atol=1e-5)
    assert loaded.grid.rows == 16 and loaded.grid.layout == "nchw"
    assert_native_map(loaded, film)
    smap = explain(loaded, film, ["gradient"], targets=["a"]).get("gradient", "a")
    assert any("logit before the model's own sigmoid" in note for note in smap.notes)


def test_onnx_export_of_a_pytorch_model_matches_its_twin(tmp_path, film):
    users = seeded(torchvision.models.resnet18(weights=None, num_classes=3))
    with_softmax = nn.Sequential(users, nn.Softmax(dim=-1)).eval()
    torch.onnx.export(
        with_softmax, torch.zeros(1, 3, 64, 64), str(tmp_path / "resnet.onnx"),
        input_names=["image"], output_names=["p"], dynamic_axes={"image": {0: "n"}}, dynamo=False,
    )  # fmt: skip
    path = write_manifest(tmp_path, "onnx", "resnet.onnx", labels=LABELS, task="multiclass")
    loaded = LoadedModel.from_manifest(path, device="cpu")
    assert loaded.head.activation == "softmax"
    x, _ = loaded.prepare(film)
    expected = onnxruntime_output(tmp_path / "resnet.onnx", x[None].numpy())[0]
    np.testing.assert_allclose(loaded.predict(film).probabilities[0], expected, rtol=1e-4, atol=1e-5)
    # The same network as a state dict: maps and probabilities agree.
    (tmp_path / "twin").mkdir()
    torch.save(users.state_dict(), tmp_path / "twin" / "resnet.pth")
    twin_path = write_manifest(tmp_path / "twin", "resnet18", "resnet.pth", labels=LABELS, task="multiclass")
    twin = LoadedModel.from_manifest(twin_path, device="cpu")
    np.testing.assert_allclose(
        loaded.predict(film).probabilities, twin.predict(film).probabilities, atol=1e-5
    )
    ours, theirs = assert_native_map(loaded, film), assert_native_map(twin, film)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_onnx_input_without_the_manifests_channels_is_named(tmp_path):
    keras_like_onnx(tmp_path / "model.onnx", channels=3)
    path = write_manifest(tmp_path, "onnx", "model.onnx", labels=LABELS, in_channels=1)
    with pytest.raises(ManifestError, match=r"no axis of 1 channels"):
        LoadedModel.from_manifest(path, device="cpu")


# --- TorchScript, missing extras, output kinds --------------------------------------------------


def test_torchscript_says_which_methods_it_cannot_support(tmp_path, film):
    users = seeded(torchvision.models.resnet18(weights=None, num_classes=3))
    scripted = torch.jit.trace(nn.Sequential(users, nn.Sigmoid()).eval(), torch.zeros(1, 3, 64, 64))
    scripted.save(str(tmp_path / "model.pt"))
    loaded = LoadedModel.from_manifest(
        write_manifest(tmp_path, "torchscript", "model.pt", labels=LABELS), "cpu"
    )
    assert loaded.target_layer is None and loaded.head.activation == "identity"
    assert_same_probabilities(loaded, nn.Sequential(users, nn.Sigmoid()), film)
    for method in ("gradcam", "guided-backprop"):
        with pytest.raises(UnsupportedMethod, match=r"no module hooks.*gradient, integrated-gradients"):
            explain(loaded, film, [method], targets=["a"])
    smap = explain(loaded, film, ["gradient", "occlusion"], targets=["a"]).get("gradient", "a")
    assert any("output probability itself" in note for note in smap.notes)


@pytest.mark.parametrize(
    ("arch", "module", "extra"), [("timm:resnet18", "timm", "timm"), ("onnx", "onnx2torch", "onnx")]
)
def test_a_missing_extra_is_named(tmp_path, monkeypatch, arch, module, extra):
    torch.save({}, tmp_path / "w.pt")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a)
    )
    with pytest.raises(ManifestError, match=rf"pip install 'saliency-viewer\[{extra}\]'"):
        LoadedModel.from_manifest(write_manifest(tmp_path, arch, "w.pt", labels=LABELS), "cpu")


def test_unknown_family_is_named(tmp_path):
    torch.save({}, tmp_path / "w.pt")
    with pytest.raises(ManifestError, match=r"unknown family 'caffe'.*timm:NAME"):
        LoadedModel.from_manifest(write_manifest(tmp_path, "caffe:vgg16", "w.pt", labels=LABELS), "cpu")


def test_network_output_probabilities_on_a_state_dict(tmp_path, film):
    """A state dict has no head to look at: ``output = "probabilities"`` says the user's model
    applied the task's activation, which the viewer then applies once."""
    users = seeded(torchvision.models.resnet18(weights=None, num_classes=3))
    torch.save(users.state_dict(), tmp_path / "w.pth")
    path = write_manifest(tmp_path, "resnet18", "w.pth", labels=LABELS, network='output = "probabilities"\n')
    loaded = LoadedModel.from_manifest(path, "cpu")
    assert_same_probabilities(loaded, users, film, torch.sigmoid)
    assert "network.output" in loaded.head.describe()
    with pytest.raises(ManifestError, match=r"network\.output must be"):
        LoadedModel.from_manifest(
            write_manifest(tmp_path, "resnet18", "w.pth", labels=LABELS, network='output = "odds"\n'), "cpu"
        )
    assert users_output(loaded, users, film).shape == (3,)


def test_torchxrayvision_resnet_state_dict(tmp_path, film):
    """``xrv.models.ResNet`` wraps a torchvision ResNet-50 with a one-channel first convolution and
    saves that network's state dict."""
    users = torchvision.models.resnet50(weights=None, num_classes=len(XRV))
    users.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    torch.save(seeded(users).state_dict(), tmp_path / "pc-nih-rsna-siim-vin-resnet50-test512-e400-state.pt")
    path = write_manifest(
        tmp_path,
        "xrv:resnet50",
        "pc-nih-rsna-siim-vin-resnet50-test512-e400-state.pt",
        labels=XRV,
        in_channels=1,
        size=(128, 128),
    )
    loaded = LoadedModel.from_manifest(path, device="cpu")
    assert loaded.target_layer == "layer4"
    assert_same_probabilities(loaded, users, film, torch.sigmoid)


def test_explain_cli_names_what_a_torchscript_model_cannot_do(tmp_path, capsys):
    from viewer.cli import main

    # A tiny network: "--methods all" runs every sampled method on it.
    users = seeded(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    )
    torch.jit.trace(users, torch.zeros(1, 3, 64, 64)).save(str(tmp_path / "model.pt"))
    manifest = write_manifest(tmp_path, "torchscript", "model.pt", labels=LABELS)
    sample = resource_path("samples", "dicom", "cxr_0002.dcm")
    code = main(
        [
            "explain",
            str(sample),
            "--model",
            str(manifest),
            "--methods",
            "gradcam",
            "--out",
            str(tmp_path / "a"),
        ]
    )
    assert code == 2 and "Grad-CAM needs a target layer" in capsys.readouterr().err
    code = main(
        ["explain", str(sample), "--model", str(manifest), "--methods", "all", "--out", str(tmp_path / "b")]
    )
    assert code == 0
    written = {p.stem for p in (tmp_path / "b").glob("*/*.npy")}
    assert {"gradient", "occlusion", "lime"} <= written and "gradcam" not in written


def _classification_builders() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


@pytest.mark.slow
@pytest.mark.parametrize("arch", _classification_builders())
def test_every_torchvision_classification_builder(tmp_path, film, arch):
    """Every builder loads from a manifest with one channel, finds a target layer whose grid reads
    as (B, K, u, v), and gives a finite Grad-CAM on the film's grid."""
    size = 224 if arch.startswith(("vit", "maxvit")) else 96
    users = torchvision.models.get_model(arch, weights=None, num_classes=3)
    from viewer.inference.architectures import set_input_channels

    set_input_channels(users, 1)
    torch.save(seeded(users).state_dict(), tmp_path / "w.pth")
    path = write_manifest(tmp_path, arch, "w.pth", labels=LABELS, in_channels=1, size=(size, size))
    loaded = LoadedModel.from_manifest(path, device="cpu")
    assert loaded.grid is not None and loaded.grid.rows > 1
    assert_same_probabilities(loaded, users, film, torch.sigmoid)
    smap = explain(loaded, film, ["gradcam"], targets=["a"]).get("gradcam", "a")
    assert smap.array.shape == (1, *film.pixels.shape[-2:]) and np.isfinite(smap.array).all()
