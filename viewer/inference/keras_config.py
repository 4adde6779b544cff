"""A Keras file's model configuration, read, checked and fixed as JSON before Keras sees it.

Keras rebuilds a model from the configuration its file holds (the ``model_config`` attribute of a
legacy ``.h5``, ``config.json`` in a ``.keras`` ZIP). Two things there run code: ``Lambda`` layers
(Keras 2 stores their Python bytecode) and custom objects (classes or functions of the user's own
modules, imported by name). Keras' ``safe_mode`` refuses Python lambdas, but not a ``Lambda``
naming a Keras function, and has had bypasses (CVE-2025-1550, CVE-2025-9905, CVE-2025-9906). So
the viewer reads the configuration itself, with h5py or zipfile, and refuses every serialised
object that is not one of Keras' own built-in classes, naming the layer, before Keras
deserialises anything.

Files written by Keras 2 (TensorFlow 2.x's tf.keras) also need small fixes before Keras 3
accepts them (keras-team/keras#19089): ``groups`` on DepthwiseConv2D, one-element ``axis`` lists
on BatchNormalization, ``keras.src.engine`` / ``tf_keras`` module names. :func:`fix_config` makes
them on the parsed JSON; nothing is executed.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

# Serialised values of Keras 3's format that are data, not classes or functions.
_DATA_MARKERS = {"__keras_tensor__", "__tuple__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__"}
# Classes that hold or name code to run, refused whatever module names them.
_CODE_CLASSES = {"Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__"}
# Keras 2's engine modules and the module of Keras 3 that holds each class now.
_ENGINE_MODULES = {
    "Functional": "keras.src.models.functional",
    "Sequential": "keras.src.models.sequential",
    "Model": "keras.src.models.model",
}
_MODELS = set(_ENGINE_MODULES)
# The largest config a model file may hold (a VGG16's is a few tens of kB).
_MAX_CONFIG = 64 << 20


class KerasConfigError(ValueError):
    """A Keras file whose configuration cannot be read (not a Keras model file, damaged)."""


@dataclass(frozen=True)
class Refusal:
    """A serialised object the viewer will not let Keras rebuild: the layer it sits in, its class,
    and why."""

    layer: str
    class_name: str
    reason: str

    def describe(self) -> str:
        return f"layer {self.layer!r} ({self.class_name}) {self.reason}"


def is_keras_archive(data: bytes) -> bool:
    """Whether ``data`` is a ``.keras`` ZIP (else it is read as a legacy ``.h5``)."""
    return zipfile.is_zipfile(io.BytesIO(data))


def read_config(data: bytes) -> dict:
    """The model configuration of a ``.keras`` ZIP or a legacy ``.h5`` file's bytes, as JSON; the
    bytes are the ones later loaded, so what was checked is what Keras reads."""
    try:
        if is_keras_archive(data):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                info = archive.getinfo("config.json")
                if info.file_size > _MAX_CONFIG:
                    raise KerasConfigError(f"its config.json is {info.file_size} bytes")
                text = archive.read(info).decode("utf-8")
        else:
            import h5py

            with h5py.File(io.BytesIO(data), "r") as f:
                text = f.attrs.get("model_config")
            if text is None:
                raise KerasConfigError("it holds no model_config (a weights-only file?)")
            text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
        config = json.loads(text)
    except KerasConfigError:
        raise
    except KeyError:
        raise KerasConfigError("the .keras archive holds no config.json") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise KerasConfigError(f"not a Keras .h5 or .keras model file ({exc})") from None
    if not isinstance(config, dict) or "class_name" not in config:
        raise KerasConfigError("its model configuration is not a Keras model")
    return config


def with_config(data: bytes, config: dict) -> bytes:
    """The file ``data`` with its model configuration replaced by ``config`` (in memory)."""
    text = json.dumps(config)
    out = io.BytesIO()
    if is_keras_archive(data):
        with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
            for info in source.infolist():
                body = text.encode("utf-8") if info.filename == "config.json" else source.read(info)
                target.writestr(info, body)
        return out.getvalue()
    import h5py

    out.write(data)
    with h5py.File(out, "r+") as f:
        f.attrs["model_config"] = text
    return out.getvalue()


def _objects(node, layer: str = "model") -> Iterator[tuple[dict, str]]:
    """Every serialised object (a dict with ``class_name``) in ``node``, with the name of the
    layer it belongs to, depth first."""
    if isinstance(node, dict):
        if "class_name" in node:
            inner = node.get("config")
            if isinstance(inner, dict) and isinstance(inner.get("name"), str) and _is_layer_like(node, inner):
                layer = inner["name"]
            yield node, layer
        for value in node.values():
            yield from _objects(value, layer)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value, layer)


def _is_layer_like(node: dict, inner: dict) -> bool:
    """A layer or model (every one has ``trainable``), not a dtype policy that also has a name."""
    return "trainable" in inner or "inbound_nodes" in node or node["class_name"] in _MODELS


def fix_config(config: dict) -> list[str]:
    """Rewrite a Keras 2 configuration in place into one Keras 3 rebuilds the same network from;
    what was changed, one line per kind of fix."""
    fixes: dict[str, int] = {}

    def count(what: str) -> None:
        fixes[what] = fixes.get(what, 0) + 1

    for node, _layer in _objects(config):
        cls, module, inner = node["class_name"], node.get("module"), node.get("config")
        if isinstance(module, str):
            if module.startswith("tf_keras."):
                module = node["module"] = module[len("tf_") :]
                count("tf_keras module names read as keras")
            if module.startswith(("keras.src.engine.", "keras.engine.")):
                node["module"] = _ENGINE_MODULES.get(cls, "keras.layers")
                count("Keras 2 engine module names mapped to Keras 3's")
        if not isinstance(inner, dict):
            continue
        for key in ("input_layers", "output_layers"):
            # Keras 2 wrote one input as [["input_1", 0, 0]]; Keras 3 then hands a nested model's
            # output on as a list, which the next layer counts as several inputs.
            value = inner.get(key)
            if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
                inner[key] = value[0]
                count("single-entry input/output lists unwrapped")
        if cls == "DepthwiseConv2D" and "groups" in inner:
            del inner["groups"]
            count("'groups' dropped from DepthwiseConv2D")
        if cls == "BatchNormalization" and isinstance(inner.get("axis"), list) and len(inner["axis"]) == 1:
            inner["axis"] = inner["axis"][0]
            count("one-element BatchNormalization axis lists made an int")
    return [f"{what} ({n}x)" for what, n in fixes.items()]


def refusals(config: dict, classes: set[str], functions: set[str]) -> list[Refusal]:
    """The objects of ``config`` Keras would rebuild from code other than its own built-in,
    pure-tensor classes: ``classes`` (layers, initializers, ...) and ``functions`` (activations)."""
    found = []
    for node, layer in _objects(config):
        cls, module = node["class_name"], node.get("module")
        if cls in _DATA_MARKERS:
            continue
        if cls in _CODE_CLASSES:
            found.append(Refusal(layer, cls, "runs Python code saved in or named by the file"))
        elif isinstance(module, str) and module != "keras" and not module.startswith("keras."):
            found.append(Refusal(layer, cls, f"is a custom object from module {module!r}"))
        elif cls == "function":
            name = node.get("config")
            if not (isinstance(name, str) and name in functions):
                found.append(Refusal(layer, f"function {name!r}", "is not a built-in Keras activation"))
        elif cls not in classes:
            found.append(Refusal(layer, cls, "is not a built-in Keras layer or object"))
        elif node.get("registered_name") not in (None, cls):
            registered = node["registered_name"]
            found.append(Refusal(layer, cls, f"is registered as {registered!r}, a custom object"))
    return found


__all__ = [
    "KerasConfigError",
    "Refusal",
    "fix_config",
    "is_keras_archive",
    "read_config",
    "refusals",
    "with_config",
]
