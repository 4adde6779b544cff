"""ONNX files as the exporters write them (issue 40): PyTorch's TorchScript-based and
torch.export-based exporters, a graph that shares its weights, and tf2onnx's export of a Keras
model. Each is loaded through a manifest as a user writes it, its probabilities compared with
onnxruntime's on the same input, and explained with Grad-CAM, which needs the converted graph's
gradients and hooks."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import torchvision
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from tests.inference.layouts import write_manifest
from viewer.explain import explain
from viewer.inference.model import LoadedModel
from viewer.inference.onnx_model import fold_constants, prepare_graph
from viewer.io import discover, load_series
from viewer.resources import resource_path

LABELS = ["a", "b", "c"]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def film():
    return load_series(discover([resource_path("samples", "dicom", "cxr_0002.dcm")]).series[0])


def onnxruntime_output(model: Path | onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def assert_like_onnxruntime(loaded: LoadedModel, path: Path, film, nhwc: bool = False) -> float:
    """The viewer's probabilities on its prepared input of ``film`` equal onnxruntime's on the same
    input, and the prepared graph (folded, lowered) gives onnxruntime the file's own outputs.
    Returns the largest difference from onnxruntime."""
    x, _ = loaded.prepare(film)
    x = (x.permute(1, 2, 0) if nhwc else x)[None].numpy()
    expected = onnxruntime_output(path, x)[0]
    ours = loaded.predict(film).probabilities[0]
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)
    prepared = onnx.load(str(path))
    prepare_graph(prepared)
    np.testing.assert_allclose(onnxruntime_output(prepared, x)[0], expected, rtol=1e-5, atol=1e-6)
    return float(np.abs(ours - expected).max())


def assert_gradcam(loaded: LoadedModel, film) -> None:
    maps = explain(loaded, film, ["gradcam"], targets=LABELS).maps
    for smap in maps:
        assert smap.array.shape == (1, *film.pixels.shape[-2:]) and np.isfinite(smap.array).all()
    assert max(float(smap.array.max()) for smap in maps) > 0


def load(folder: Path, weights: str, task: str = "multilabel", size: int = 64) -> LoadedModel:
    manifest = write_manifest(folder, "onnx", weights, labels=LABELS, task=task, size=(size, size))
    return LoadedModel.from_manifest(manifest, "cpu")


# --- PyTorch's exporters ------------------------------------------------------------------------


def untrained(arch: str) -> nn.Module:
    """A torchvision network as its builder leaves it: every BatchNorm at mean 0, variance 1,
    weight 1, bias 0, so folding each into its Conv gives the same zero bias over and over, and the
    TorchScript exporter keeps one and shares it through ``Identity`` nodes (the file of issue 40)."""
    torch.manual_seed(0)
    return nn.Sequential(getattr(torchvision.models, arch)(weights=None, num_classes=3), nn.Sigmoid()).eval()


# Opset 17 is the TorchScript exporter's default; 20 the newest it writes, past onnx2torch's 17
# (Identity, Reshape, Shape have new versions at 19), so the graph must be brought down to 17.
# DenseNet-121 on 32 x 32 (its five halvings end on 1 x 1), to keep the test short.
@pytest.mark.parametrize(
    ("arch", "opset", "size"),
    [("resnet18", 17, 64), ("resnet18", 20, 64), ("densenet121", 17, 32), ("densenet121", 20, 32)],
)
def test_torchscript_exporter(tmp_path, film, arch, opset, size):
    path, network = tmp_path / "model.onnx", untrained(arch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "the legacy TorchScript-based exporter"
        torch.onnx.export(
            network, torch.zeros(1, 3, size, size), str(path), input_names=["image"],
            dynamic_axes={"image": {0: "n"}}, opset_version=opset, dynamo=False,
        )  # fmt: skip
    graph = onnx.load(str(path)).graph
    initializers = {t.name for t in graph.initializer}
    assert any(n.op_type == "Identity" and n.input[0] in initializers for n in graph.node)
    loaded = load(tmp_path, "model.onnx", size=size)
    assert loaded.head.activation == "sigmoid"
    assert assert_like_onnxruntime(loaded, path, film) < 1e-5
    assert_gradcam(loaded, film)
    assert_same_input_gradient(loaded, network[0], size)


def assert_same_input_gradient(loaded: LoadedModel, network: nn.Module, size: int = 64) -> None:
    """The converted graph's gradient of a logit by the input is the exported network's own, on a
    fixed random tensor. (Not on a film: its flat background gives ReLU zeros that tie in MaxPool
    windows, and the exporter's folding of BatchNorm into the Convs changes the last bits that
    break those ties; the converted graph then equals the folded network exactly, checked by hand
    with torch.fx's ``fuse``, and the unfolded one up to where the ties send the gradient.)"""
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 3, size, size)).astype(np.float32))
    grads = []
    for model in (loaded.network, network):
        leaf = x.clone().requires_grad_()
        grads.append(torch.autograd.grad(model(leaf)[0, 1], leaf)[0])
    ours, theirs = grads
    assert float(theirs.abs().max()) > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5 * float(theirs.abs().max()))


def test_torch_export_based_exporter(tmp_path, film):
    """``dynamo=True`` (onnxscript) writes opset 18 and up: ``ReduceMean`` with its axes as an
    input and ``Reshape(allowzero=1)``, neither of which onnx2torch 1.5 converts."""
    if importlib.util.find_spec("onnxscript") is None:  # in the test extra: CI has it
        (pytest.fail if os.environ.get("CI") else pytest.skip)("dynamo=True needs onnxscript (test extra)")
    path = tmp_path / "model.onnx"
    torch.manual_seed(0)
    network = nn.Sequential(torchvision.models.resnet18(weights=None, num_classes=3), nn.Softmax(-1)).eval()
    program = torch.onnx.export(network, (torch.zeros(1, 3, 64, 64),), dynamo=True, verbose=False)
    program.save(str(path))
    written = onnx.load(str(path))
    assert written.opset_import[0].version >= 18
    assert {"ReduceMean", "Reshape"} <= {n.op_type for n in written.graph.node}
    loaded = load(tmp_path, "model.onnx", task="multiclass")
    assert loaded.head.activation == "softmax"
    assert assert_like_onnxruntime(loaded, path, film) < 1e-5
    assert_gradcam(loaded, film)
    assert_same_input_gradient(loaded, network[0])


# --- A graph that shares its weights --------------------------------------------------------------


def shared_weights_onnx(path: Path) -> None:
    """A CNN whose weights are reached every way an exporter reaches them: one initializer used by
    two Convs, a bias shared through ``Identity``, a Conv kernel from a ``Constant`` node through an
    ``Identity``, half-precision weights ``Cast`` to float, and a ``Gemm`` fed by ``Constant``s."""
    rng = np.random.default_rng(0)

    def array(*shape):
        return (rng.normal(size=shape) * 0.3).astype(np.float32)

    inits = [
        numpy_helper.from_array(array(8, 3, 3, 3).astype(np.float16), "w1_half"),
        numpy_helper.from_array(array(8), "b1"),
        numpy_helper.from_array(array(8, 8, 3, 3), "w2"),
        numpy_helper.from_array(array(8), "b2"),
    ]
    nodes = [
        helper.make_node("Cast", ["w1_half"], ["w1"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1] * 4, strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1] * 4),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Identity", ["b2"], ["b2_shared"]),
        helper.make_node("Conv", ["r2", "w2", "b2_shared"], ["c3"], pads=[1] * 4),
        helper.make_node("Add", ["c3", "r1"], ["sum"]),
        helper.make_node("Relu", ["sum"], ["r3"]),
        helper.make_node("Constant", [], ["w4_const"], value=numpy_helper.from_array(array(16, 8, 3, 3))),
        helper.make_node("Identity", ["w4_const"], ["w4"]),
        helper.make_node("Conv", ["r3", "w4"], ["c4"], pads=[1] * 4, strides=[2, 2]),
        helper.make_node("Relu", ["c4"], ["r4"]),
        helper.make_node("GlobalAveragePool", ["r4"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Constant", [], ["fc_w"], value=numpy_helper.from_array(array(3, 16))),
        helper.make_node("Constant", [], ["fc_b"], value_floats=array(3).tolist()),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
        helper.make_node("Sigmoid", ["logits"], ["p"]),
    ]
    graph = helper.make_graph(
        nodes,
        "shared",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, 64, 64])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n", 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_shared_weights(tmp_path, film):
    shared_weights_onnx(tmp_path / "model.onnx")
    loaded = load(tmp_path, "model.onnx")
    assert assert_like_onnxruntime(loaded, tmp_path / "model.onnx", film) < 1e-5
    assert_gradcam(loaded, film)
    # On a fixed random tensor too, through the network the viewer runs.
    x = np.random.default_rng(1).normal(size=(2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ours = loaded.probabilities(loaded.network(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(ours, onnxruntime_output(tmp_path / "model.onnx", x), rtol=1e-4, atol=1e-5)


def test_folding_leaves_what_must_run(tmp_path):
    """A random draw is not frozen into a constant, and a constant that would grow far past the
    file (``Expand`` of a scalar to a big tensor) stays a node; both keep their semantics."""
    scalar = numpy_helper.from_array(np.array(0.5, np.float32), "half")
    big = numpy_helper.from_array(np.array([1, 3, 512, 512], np.int64), "big")
    nodes = [
        helper.make_node("Expand", ["half", "big"], ["grid"]),
        helper.make_node("RandomUniform", [], ["noise"], shape=[1, 3, 512, 512], seed=1.0),
        helper.make_node("Mul", ["noise", "half"], ["zeroed_noise"]),
        helper.make_node("Sub", ["zeroed_noise", "zeroed_noise"], ["zero"]),
        helper.make_node("Add", ["image", "grid"], ["shifted"]),
        helper.make_node("Add", ["shifted", "zero"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "kept",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 512, 512])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 512, 512])],
        [scalar, big],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert fold_constants(model) == 0
    assert [n.op_type for n in model.graph.node] == [n.op_type for n in nodes]
    x = np.random.default_rng(0).normal(size=(1, 3, 512, 512)).astype(np.float32)
    np.testing.assert_allclose(onnxruntime_output(model, x), x + 0.5, atol=1e-6)


# --- tf2onnx's export of a Keras model ------------------------------------------------------------


def keras_probe() -> np.ndarray:
    """tests/fixtures/make_keras_onnx.py's ``probe()``, the input Keras' probabilities were taken on."""
    return (2 * np.sin(np.arange(2 * 64 * 64 * 3) * 0.37)).reshape(2, 64, 64, 3).astype("float32")


def test_tf2onnx_export_of_a_keras_model(tmp_path, film):
    """tests/fixtures/keras_cnn.onnx: Conv2D/BatchNormalization/ReLU, GlobalAveragePooling2D and
    Dense(sigmoid), channels last, as tf2onnx 1.17 wrote it from Keras 3.15 (TensorFlow 2.21)."""
    shutil.copy(FIXTURES / "keras_cnn.onnx", tmp_path / "model.onnx")
    loaded = load(tmp_path, "model.onnx")
    assert loaded.head.activation == "sigmoid"
    assert any("channels-last" in note for note in loaded.notes)
    assert assert_like_onnxruntime(loaded, tmp_path / "model.onnx", film, nhwc=True) < 1e-5
    assert_gradcam(loaded, film)
    # Keras' own probabilities on the fixed probe: onnxruntime and the viewer give them.
    x = keras_probe()
    keras = np.array(json.loads((FIXTURES / "keras_cnn.json").read_text())["keras"], np.float32)
    with torch.no_grad():
        ours = loaded.probabilities(loaded.network(torch.from_numpy(x).permute(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(onnxruntime_output(tmp_path / "model.onnx", x), keras, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours, keras, rtol=1e-4, atol=1e-5)
