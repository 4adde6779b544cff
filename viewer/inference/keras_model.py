"""Keras models (``.keras`` from Keras 3, legacy ``.h5`` from TensorFlow 2.x's tf.keras) as PyTorch
modules, through Keras 3 on its PyTorch backend: no TensorFlow, no export step.

On that backend a loaded Keras model *is* a ``torch.nn.Module`` whose forward keeps the autograd
graph, and every Keras layer is a module whose forward hooks fire. But Keras keeps its layers out
of ``named_modules()``, so :class:`KerasNetwork` registers each layer (nested models searched, as
a transfer model is often ``Sequential([MobileNetV2(...), pooling, Dense])``) under the name Keras
gave it: ``target_layer = "out_relu"`` means what it means in Keras. Three things differ from a
PyTorch network and are handled here:

- Keras works channels last: the viewer's ``(N, C, H, W)`` input is permuted to ``(N, H, W, C)``,
  and layer outputs are read channels last (``channels_last_features``).
- A last ``Dense(..., activation="softmax"/"sigmoid")`` is set to linear and the activation applied
  by the viewer (:mod:`viewer.inference.output_head`), as keras.io's Grad-CAM recipe does.
- Activations fused into ``Conv2D(activation="relu")`` are calls of ``torch.nn.functional.relu``
  in the backend, which :mod:`viewer.explain.relu_rules` reroutes like any functional ReLU.

Security: see :mod:`viewer.inference.keras_config`. Nothing of the file reaches Keras before its
configuration has been checked; a file with a Lambda or a custom object loads only if the user
trusts it (:mod:`viewer.inference.trust`), and only then with ``safe_mode=False``.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import torch
from torch import nn

from viewer.inference.built import Built
from viewer.inference.keras_config import (
    KerasConfigError,
    Refusal,
    fix_config,
    is_keras_archive,
    read_config,
    refusals,
    with_config,
)
from viewer.inference.manifest import ManifestError, ModelManifest
from viewer.inference.onnx_model import channels_last
from viewer.inference.trust import UntrustedModelError, is_trusted

# Layers of ``keras.layers`` that run code or load other files, refused like a Lambda.
_UNSAFE_LAYERS = {"Lambda", "TorchModuleWrapper", "TFSMLayer", "JaxLayer", "FlaxLayer"}
_MODEL_CLASSES = {"Functional", "Sequential", "Model"}


def use_torch_backend() -> None:
    """Make Keras run on PyTorch: ``KERAS_BACKEND`` is read once, when keras is first imported."""
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "torch"


def _keras(manifest: ModelManifest):
    import keras

    if keras.backend.backend() != "torch":
        raise ManifestError(
            manifest.path,
            f"Keras was imported with the {keras.backend.backend()!r} backend before the viewer "
            "loaded it; the viewer needs KERAS_BACKEND=torch",
        )
    return keras


def builtin_names(keras) -> tuple[set[str], set[str]]:
    """Keras' own classes a model configuration may name (layers, initializers, regularizers,
    constraints, dtype policies, models) and its built-in activation functions."""
    classes = set(_MODEL_CLASSES)
    for namespace in (keras.layers, keras.initializers, keras.regularizers, keras.constraints):
        classes |= {n for n in dir(namespace) if isinstance(getattr(namespace, n), type)}
    classes |= {n for n in dir(keras.dtype_policies) if n.endswith("DTypePolicy")}
    functions = {n for n in dir(keras.activations) if callable(getattr(keras.activations, n))}
    return classes - _UNSAFE_LAYERS, functions - {"deserialize", "get", "serialize"}


def check_keras_file(path: Path, data: bytes | None = None) -> list[Refusal]:
    """What in the Keras file at ``path`` would run code (empty: only Keras' built-in layers).
    Reads the configuration as JSON; Keras deserialises nothing."""
    import keras

    config = read_config(path.read_bytes() if data is None else data)
    return refusals(config, *builtin_names(keras))


def describe_refusals(found: list[Refusal]) -> str:
    shown = "; ".join(r.describe() for r in found[:3])
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return f"has code Keras would run: {shown}{more}"


class KerasNetwork(nn.Module):
    """A Keras model fed channels-first input, its layers reachable by their Keras names."""

    def __init__(self, model: nn.Module, nhwc: bool):
        super().__init__()
        self.keras_model = model
        self.nhwc = nhwc
        # Layer outputs are (N, H, W, C): read so even where H, W and C are equal in size.
        self.channels_last_features = nhwc
        self.skipped: list[str] = []
        for name, layer in _leaf_layers(model):
            attribute = name.replace(".", "_")
            if attribute in self._modules or hasattr(self, attribute):
                self.skipped.append(name)
            else:
                self.add_module(attribute, layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.keras_model(x.permute(0, 2, 3, 1) if self.nhwc else x)


def _leaf_layers(model):
    """``(name, layer)`` for every layer of ``model`` and of the models nested in it, in order."""
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if hasattr(layer, "layers") and kind in _MODEL_CLASSES:
            yield from _leaf_layers(layer)
        else:
            yield layer.name, layer


def _last_layer(model):
    last = model.layers[-1]
    while hasattr(last, "layers") and type(last).__name__ in _MODEL_CLASSES:
        last = last.layers[-1]
    return last


def _take_off_head(keras, model) -> tuple[str | None, str]:
    """Set a last softmax/sigmoid to linear; what was taken off, or "identity" for a head that
    cannot be cut (a Softmax layer)."""
    last = _last_layer(model)
    activation = getattr(last, "activation", None)
    for name in ("softmax", "sigmoid"):
        if activation is getattr(keras.activations, name):
            last.activation = keras.activations.linear
            return name, f"the Keras model's last layer, {last.name}"
    if type(last).__name__ == "Softmax":
        return "identity", f"the Keras model ends in a Softmax layer ({last.name})"
    return None, ""


def _load(keras, data: bytes, safe_mode: bool):
    if is_keras_archive(data):
        from keras.src.saving import saving_lib  # the loader of .keras archives, on a file object

        return saving_lib.load_model(io.BytesIO(data), compile=False, safe_mode=safe_mode)
    import h5py
    from keras.src.legacy.saving import legacy_h5_format  # what keras.saving.load_model uses for .h5

    with h5py.File(io.BytesIO(data), "r") as f:
        return legacy_h5_format.load_model_from_hdf5(f, compile=False, safe_mode=safe_mode)


def convert_keras(manifest: ModelManifest) -> Built:
    """The Keras model of ``manifest.weights`` as a :class:`Built` network (see the module)."""
    keras = _keras(manifest)
    path = manifest.weights
    try:
        data = path.read_bytes()
        config = read_config(data)
    except (OSError, KerasConfigError) as exc:
        raise ManifestError(manifest.path, f"cannot read {path.name}: {exc}") from None
    found = refusals(config, *builtin_names(keras))
    trusted = bool(found) and is_trusted(path)
    if found and not trusted:
        operators = [f"{r.class_name} in layer {r.layer}" for r in found]
        raise UntrustedModelError(manifest.path, path, describe_refusals(found), operators)
    fixes = fix_config(config)
    try:
        model = _load(keras, with_config(data, config) if fixes else data, safe_mode=not trusted)
    except Exception as exc:  # Keras' own errors are many kinds: one line naming the file
        reason = " ".join(str(exc).split())[:300]
        raise ManifestError(manifest.path, f"Keras cannot load {path.name}: {reason}") from None
    shape = model.inputs[0].shape if getattr(model, "inputs", None) else None
    if shape is None or len(shape) != 4:
        raise ManifestError(manifest.path, f"{path.name}: the viewer feeds one image input (N, H, W, C)")
    try:
        nhwc = channels_last([None, *shape[1:]], manifest.in_channels)
    except ValueError as exc:
        raise ManifestError(manifest.path, f"{path.name}: {exc}") from None
    activation, source = _take_off_head(keras, model) if manifest.output != "logits" else (None, "")
    network = KerasNetwork(model, nhwc)
    built = Built(network, "keras", weights_inside=True)
    built.activation, built.activation_source = activation, source
    if nhwc:
        built.notes.append("channels-last (Keras) input: the viewer permutes (N, C, H, W) to (N, H, W, C)")
    if activation in ("softmax", "sigmoid"):
        built.notes.append(f"the Keras model's last {activation} is applied by the viewer")
    if fixes:
        built.notes.append(f"{path.name} was written by Keras 2; fixed for Keras 3: {'; '.join(fixes)}")
    if network.skipped:
        taken = ", ".join(network.skipped)
        built.notes.append(f"layers not addressable by name (their name is taken): {taken}")
    if trusted:
        built.notes.append(f"you trusted {path.name}, which {describe_refusals(found)}")
    return built


__all__ = [
    "KerasNetwork",
    "builtin_names",
    "check_keras_file",
    "convert_keras",
    "describe_refusals",
    "use_torch_backend",
]
