"""Keras files loaded directly (issue 42, item 3), through Keras 3 on its PyTorch backend.

The ``.h5`` fixtures were written by TensorFlow 2.15's tf.keras (tests/fixtures/make_keras_fixtures.py,
run in a separate environment), with TensorFlow's own logits, probabilities and the Grad-CAM of
keras.io's "Grad-CAM class activation visualization" recipe (tf.GradientTape on the last
convolution's output, gradients averaged over the grid) recorded beside them. The viewer must
give the same numbers without TensorFlow, refuse files whose configuration runs code before Keras
reads them, and take 8-bit films as ``preprocess_input`` and ``ToTensor`` do (item 4).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from captum.attr import GuidedBackprop
from torch import nn

from tests.inference.layouts import write_manifest
from viewer.cli import main
from viewer.explain.cam import GradCAM
from viewer.explain.context import ExplainContext
from viewer.explain.relu_rules import routed_relus
from viewer.inference.keras_config import fix_config
from viewer.inference.keras_model import use_torch_backend
from viewer.inference.manifest import ManifestError
from viewer.inference.model import LoadedModel
from viewer.inference.trust import UntrustedModelError, trust
from viewer.io import discover, load_series

use_torch_backend()
import keras  # noqa: E402  (after KERAS_BACKEND is set)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keras"
REFERENCE = np.load(FIXTURES / "reference.npz")
pytestmark = pytest.mark.timeout(300)

# (fixture, labels, task, input size, mean/std: what the file's training pipeline did to x / 255)
SMALL = ("small_cnn.h5", ["a", "b", "c"], "multiclass", 32, "[0.0]", "[1.0]")  # ToTensor
MOBILENET = ("mobilenet_sigmoid.h5", ["pneumonia"], "multilabel", 96, "[0.5]", "[0.5]")  # x/127.5 - 1


def load(folder: Path, spec, network: str = "") -> LoadedModel:
    weights, labels, task, size, mean, std = spec
    if not (folder / weights).exists():
        shutil.copy(FIXTURES / weights, folder / weights)
    manifest = write_manifest(
        folder, "keras", weights, labels=labels, task=task, size=(size, size), network=network
    )
    text = (
        manifest.read_text().replace("mean = [0.5]", f"mean = {mean}").replace("std = [0.25]", f"std = {std}")
    )
    manifest.write_text(text)
    return LoadedModel.from_manifest(manifest, "cpu")


def nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize(("spec", "key"), [(SMALL, "small"), (MOBILENET, "mobilenet")])
def test_h5_outputs_equal_tensorflow(tmp_path, spec, key):
    loaded = load(tmp_path, spec)
    assert loaded.family == "keras" and loaded.head.activation == ("softmax" if key == "small" else "sigmoid")
    assert any("written by Keras 2" in note for note in loaded.notes)
    with torch.no_grad():
        logits = loaded.network(nchw(REFERENCE[f"{key}_input"]))
    np.testing.assert_allclose(logits.numpy(), REFERENCE[f"{key}_logits"], atol=1e-5)
    np.testing.assert_allclose(loaded.head(logits).numpy(), REFERENCE[f"{key}_probabilities"], atol=1e-5)


@pytest.mark.parametrize(
    ("spec", "key", "layer"), [(SMALL, "small", "last_conv"), (MOBILENET, "mobilenet", "out_relu")]
)
def test_gradcam_equals_keras_io_recipe(tmp_path, spec, key, layer):
    # out_relu is a layer of the MobileNetV2 nested in the Sequential: found by its Keras name.
    loaded = load(tmp_path, spec, network=f'target_layer = "{layer}"\n')
    assert loaded.target_layer == layer and loaded.grid.layout == "nhwc"
    target = int(REFERENCE["small_index"]) if key == "small" else 0
    with ExplainContext.for_model(loaded, nchw(REFERENCE[f"{key}_input"])) as ctx:
        raw = GradCAM().compute(ctx, [target])[0, 0]
    heatmap = raw.clamp(min=0) / raw.max()  # the recipe's ReLU and scaling to a maximum of 1
    np.testing.assert_allclose(heatmap.numpy(), REFERENCE[f"{key}_gradcam"], atol=1e-5)


class SmallTwin(nn.Module):
    """small_cnn.h5 written in PyTorch with ReLU modules, for Captum's GuidedBackprop. Keras'
    "same" padding of a stride-2 convolution on an even size pads only the bottom and right."""

    def __init__(self, model):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 3, stride=2)
        self.bn = nn.BatchNorm2d(8, eps=1e-3)
        self.dense = nn.Linear(16, 3)
        for conv, name in ((self.conv1, "conv1"), (self.conv2, "last_conv")):
            kernel, bias = (torch.from_numpy(np.asarray(w)) for w in model.get_layer(name).get_weights())
            conv.weight.data, conv.bias.data = kernel.permute(3, 2, 0, 1).contiguous(), bias
        gamma, beta, mean, var = (
            torch.from_numpy(np.asarray(w)) for w in model.get_layer("bn1").get_weights()
        )
        self.bn.weight.data, self.bn.bias.data, self.bn.running_mean, self.bn.running_var = (
            gamma,
            beta,
            mean,
            var,
        )
        kernel, bias = (torch.from_numpy(np.asarray(w)) for w in model.get_layer("predictions").get_weights())
        self.dense.weight.data, self.dense.bias.data = kernel.T.contiguous(), bias
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()

    def forward(self, x):
        x = self.bn(self.relu1(self.conv1(x)))
        x = self.relu2(self.conv2(nn.functional.pad(x, (0, 1, 0, 1))))
        return self.dense(x.mean(dim=(2, 3)))


def test_guided_backprop_through_fused_activations(tmp_path):
    # Conv2D(activation="relu") has no ReLU module: the backend's functional relu is rerouted.
    loaded = load(tmp_path, SMALL)
    x = nchw(REFERENCE["small_input"])
    twin = SmallTwin(loaded.network.keras_model).eval()
    with torch.no_grad():
        np.testing.assert_allclose(twin(x).numpy(), REFERENCE["small_logits"], atol=1e-5)
    target = int(REFERENCE["small_index"])
    with routed_relus() as rules:
        loaded.network(x)
    assert rules.relu_calls == 2  # conv1 and last_conv
    with ExplainContext.for_model(loaded, x) as ctx:
        ours = ctx.input_grads(target, "guided")
    expected = GuidedBackprop(twin).attribute(x.clone().requires_grad_(True), target=target)
    np.testing.assert_allclose(ours.numpy(), expected.detach().numpy(), atol=1e-6)
    assert float(ours.abs().sum()) > 0


@pytest.mark.parametrize(
    ("spec", "png", "key"), [(SMALL, "small_film.png", "small"), (MOBILENET, "film.png", "mobilenet")]
)
def test_png_probabilities_equal_the_framework_pipeline(tmp_path, spec, png, key):
    # Item 4: the PNG opened by the viewer reaches the network as TensorFlow's pipeline fed it
    # (x / 255 for ToTensor, mobilenet_v2.preprocess_input's x / 127.5 - 1).
    loaded = load(tmp_path, spec)
    film = load_series(discover([FIXTURES / png]).series[0])
    x, _ = loaded.prepare(film)
    np.testing.assert_allclose(x[None].numpy(), nchw(REFERENCE[f"{key}_input"]).numpy(), atol=1e-6)
    probabilities = loaded.predict(film).probabilities
    np.testing.assert_allclose(probabilities, REFERENCE[f"{key}_probabilities"], atol=1e-5)


def test_keras3_file_loads(tmp_path):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((24, 24, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="features")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.save(tmp_path / "model.keras")
    x = np.linspace(0, 1, 2 * 24 * 24, dtype="float32").reshape(2, 24, 24, 1)
    expected = np.asarray(model.predict(x, verbose=0))
    manifest = write_manifest(tmp_path, "keras", "model.keras", labels=["a", "b"], task="multiclass",
                              size=(24, 24), in_channels=1)  # fmt: skip
    loaded = LoadedModel.from_manifest(manifest, "cpu")
    assert loaded.target_layer == "features" and not any("Keras 2" in note for note in loaded.notes)
    with torch.no_grad():
        ours = loaded.head(loaded.network(nchw(x))).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_lambda_refused_before_anything_runs(tmp_path, monkeypatch):
    sentinel = tmp_path / "lambda-ran"
    monkeypatch.setenv("KERAS_SENTINEL", str(sentinel))
    monkeypatch.setenv("SALIENCY_VIEWER_TRUST", str(tmp_path / "trust.json"))
    spec = ("lambda.h5", ["a", "b"], "multiclass", 8, "[0.0]", "[1.0]")
    with pytest.raises(UntrustedModelError, match="layer 'leave_mark' \\(Lambda\\)") as refused:
        load(tmp_path, spec)
    assert not sentinel.exists()
    assert "model trust" in str(refused.value)
    # The user trusts the file explicitly: then, and only then, Keras runs its code.
    trust(tmp_path / "lambda.h5", list(refused.value.request.operators))
    loaded = load(tmp_path, spec)
    assert any("you trusted lambda.h5" in note for note in loaded.notes)
    assert sentinel.exists()


def _edit_config(path: Path, edit) -> None:
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        edit(config)
        f.attrs["model_config"] = json.dumps(config)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"class_name": "MyPooling", "module": "my_lab.layers"},
            "layer 'pool' (MyPooling) is a custom object",
        ),
        ({"class_name": "MyPooling"}, "layer 'pool' (MyPooling) is not a built-in Keras layer"),
        ({"registered_name": "my_lab>Pool"}, "registered as 'my_lab>Pool'"),
        ({"class_name": "TorchModuleWrapper"}, "layer 'pool' (TorchModuleWrapper) is not a built-in"),
    ],
)
def test_custom_objects_refused_by_name(tmp_path, monkeypatch, change, message):
    monkeypatch.setenv("SALIENCY_VIEWER_TRUST", str(tmp_path / "trust.json"))
    shutil.copy(FIXTURES / "small_cnn.h5", tmp_path / "small_cnn.h5")

    def edit(config):
        layer = next(layer for layer in config["config"]["layers"] if layer["config"]["name"] == "pool")
        layer.update(change)

    _edit_config(tmp_path / "small_cnn.h5", edit)
    with pytest.raises(UntrustedModelError, match=re.escape(message)):
        load(tmp_path, SMALL)


def test_custom_activation_function_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_VIEWER_TRUST", str(tmp_path / "trust.json"))
    shutil.copy(FIXTURES / "small_cnn.h5", tmp_path / "small_cnn.h5")

    def edit(config):
        conv = next(layer for layer in config["config"]["layers"] if layer["config"]["name"] == "conv1")
        conv["config"]["activation"] = {"module": "keras.activations", "class_name": "function",
                                        "config": "os.system", "registered_name": None}  # fmt: skip

    _edit_config(tmp_path / "small_cnn.h5", edit)
    with pytest.raises(UntrustedModelError, match=re.escape("layer 'conv1' (function 'os.system')")):
        load(tmp_path, SMALL)


def test_keras2_module_names_fixed():
    # A .keras archive of tf.keras 2.13-2.15 names its model classes by Keras 2's engine modules.
    config = {
        "module": "keras.src.engine.functional",
        "class_name": "Functional",
        "config": {"layers": [{"module": "tf_keras.src.engine.sequential", "class_name": "Sequential",
                               "config": {"layers": []}}]},
    }  # fmt: skip
    fixes = fix_config(config)
    assert config["module"] == "keras.src.models.functional"
    assert config["config"]["layers"][0]["module"] == "keras.src.models.sequential"
    assert any("engine module names" in fix for fix in fixes) and any("tf_keras" in fix for fix in fixes)


def test_doctor_on_a_keras_manifest(tmp_path, capsys):
    load(tmp_path, MOBILENET, network='target_layer = "out_relu"\n')
    code = main(["model", "check", str(tmp_path / "manifest.toml"), str(FIXTURES / "film.png")])
    out = capsys.readouterr().out
    assert code == 0, out
    for part in ("arch keras (keras)", "sigmoid applied by the viewer", "out_relu", "OK: the viewer"):
        assert part in out


def test_missing_keras_names_the_extra(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "keras" else real(name, *a)
    )
    with pytest.raises(ManifestError, match=r"pip install 'saliency-viewer\[keras\]'"):
        load(tmp_path, SMALL)


def test_backend_is_torch():
    assert keras.backend.backend() == "torch" and os.environ["KERAS_BACKEND"] == "torch"


def test_model_trust_cli_names_the_lambda(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SALIENCY_VIEWER_TRUST", str(tmp_path / "trust.json"))
    monkeypatch.setenv("KERAS_SENTINEL", str(tmp_path / "lambda-ran"))
    shutil.copy(FIXTURES / "lambda.h5", tmp_path / "lambda.h5")
    assert main(["model", "trust", str(tmp_path / "lambda.h5")]) == 0
    out = capsys.readouterr().out
    assert "layer 'leave_mark' (Lambda)" in out and "Trusted" in out
    assert not (tmp_path / "lambda-ran").exists()  # trusting reads the configuration only
    assert main(["model", "trust", str(FIXTURES / "small_cnn.h5")]) == 0
    assert "nothing to trust" in capsys.readouterr().out
