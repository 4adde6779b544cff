"""Which classes a pickled checkpoint may name, and what a saved network's head was.

Checkpoints are read as data (:mod:`viewer.inference.pickle_data`): nothing named in them is ever
called. A whole pickled model (``torch.save(model)``, ``{"model": model, "epoch": ...}``) may name
**network classes** (subclasses of ``torch.nn.Module``) of torch, torchvision, timm, MONAI and
TorchXRayVision; each is looked up in the installed library (never from the file) only to read its
attributes' names. Anything else, a function (``os.system``, ``builtins.exec``,
``subprocess.Popen``, ``torch.hub.load``) or a class of the user's own code, is refused with a
message that names it and says how to re-save the weights.
"""

from __future__ import annotations

import importlib
import importlib.util
import re

import torch
from torch import nn

# Libraries whose network classes a checkpoint may name, and the pip package of each.
NETWORK_PACKAGES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "timm": "timm",
    "monai": "monai",
    "torchxrayvision": "torchxrayvision",
}
RESAVE = (
    "Re-save the weights only, where the model was made: "
    "torch.save(model.state_dict(), 'weights.pt') (or safetensors.torch.save_file)."
)
_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class UnsafePickleError(ValueError):
    """A checkpoint names something the loader will not import; the message says what and why."""


def plain(text: str) -> str:
    """``text`` without terminal escape codes (PyTorch's messages carry bold markers)."""
    return _ESCAPES.sub("", text)


def resolve_global(name: str) -> type:
    """The network class ``module.Class`` names, imported from an installed library, or
    :class:`UnsafePickleError` saying why it may not be used."""
    module_name, _, attribute = name.rpartition(".")
    top = module_name.split(".")[0]
    if top not in NETWORK_PACKAGES:
        raise UnsafePickleError(
            f"the file names {name}, which is not a network class of torch, torchvision, timm, "
            f"MONAI or TorchXRayVision; loading it could run code, so it is refused. {RESAVE}"
        )
    if importlib.util.find_spec(top) is None:
        raise UnsafePickleError(
            f"the file names {name} from {top}, which is not installed here "
            f"(pip install {NETWORK_PACKAGES[top]})"
        )
    try:
        found = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        raise UnsafePickleError(f"the file names {name}, which the installed {top} does not have") from None
    # TorchScript modules carry compiled code of their own: a .pt of TorchScript is loaded as such.
    if not (isinstance(found, type) and issubclass(found, nn.Module)) or issubclass(
        found, torch.jit.ScriptModule
    ):
        raise UnsafePickleError(
            f"the file names {name}, a function or class that is not a network layer; loading it "
            f"could run code, so it is refused. {RESAVE}"
        )
    return found


def head_activation(leaf_classes: list[type]) -> str | None:
    """``"sigmoid"`` or ``"softmax"`` when the last of a network's leaf modules (their classes, in
    order) turns logits into probabilities (CheXNet's ``classifier = Sequential(Linear,
    Sigmoid)``), else ``None``."""
    last = leaf_classes[-1] if leaf_classes else None
    if last is not None and issubclass(last, nn.Sigmoid):
        return "sigmoid"
    if last is not None and issubclass(last, nn.Softmax | nn.LogSoftmax):
        return "softmax"
    return None


__all__ = ["RESAVE", "UnsafePickleError", "head_activation", "plain", "resolve_global"]
