"""Whole pickled models (``torch.save(model)``, ``{"model": model, "epoch": ...}``) read without
running code from the file.

PyTorch's own restricted unpickler (``torch.load(weights_only=True)``) does the reading; it refuses
every global it was not told is safe. This module decides which globals a checkpoint may name:
**network classes** (subclasses of ``torch.nn.Module``) from torch, torchvision, timm, MONAI and
TorchXRayVision, imported from the installed libraries (never from the file). Anything else, a
function (``os.system``, ``builtins.exec``, ``subprocess.Popen``, ``torch.hub.load``) or a class of
the user's own code, is refused with a message that names it and says how to re-save the weights.
The names come from ``torch.serialization.get_unsafe_globals_in_checkpoint`` (zip checkpoints, read
without unpickling) and from the unpickler's own refusals (older formats), one at a time.
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import re
import zipfile
from pathlib import Path

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
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MAX_CLASSES = 512  # a network names a few dozen classes; more means a file made to wear us out


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


def load_pickled(path: Path) -> object:
    """What ``torch.save`` wrote to ``path`` (a state dict, or a whole model), unpickled by
    PyTorch's restricted unpickler with only the network classes it names allowed."""
    path = Path(path)
    allowed: list[type] = []
    if zipfile.is_zipfile(path):
        allowed = [
            resolve_global(name) for name in torch.serialization.get_unsafe_globals_in_checkpoint(path)
        ]
    for _ in range(_MAX_CLASSES):
        try:
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            message = plain(str(exc))
            named = _GLOBAL.search(message)
            if named is None:
                raise UnsafePickleError(
                    f"not a checkpoint the safe loader can read ({_reason(message)}). {RESAVE}"
                ) from None
            found = resolve_global(named.group(1))
            if found in allowed:  # allowed, still refused: PyTorch's own rule, not ours
                raise UnsafePickleError(f"cannot read {named.group(1)} safely. {RESAVE}") from None
            allowed.append(found)
    raise UnsafePickleError(f"the file names more than {_MAX_CLASSES} classes. {RESAVE}")


def _reason(message: str) -> str:
    """The line of PyTorch's refusal that says what it met (its last, before the link to docs)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Check the documentation")]
    return lines[-1][:200] if lines else "unreadable"


def head_activation(model: nn.Module) -> str | None:
    """``"sigmoid"`` or ``"softmax"`` when the network's last module turns logits into
    probabilities (CheXNet's ``classifier = Sequential(Linear, Sigmoid)``), else ``None``."""
    last = None
    for module in model.modules():
        if not list(module.children()):
            last = module
    if isinstance(last, nn.Sigmoid):
        return "sigmoid"
    if isinstance(last, nn.Softmax | nn.LogSoftmax):
        return "softmax"
    return None


__all__ = ["UnsafePickleError", "head_activation", "load_pickled", "plain", "resolve_global"]
