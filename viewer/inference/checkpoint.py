"""Load weights from the files people actually have, without ever unpickling code.

Accepted: safetensors; ``.pt``/``.pth``/``.pth.tar``/``.ckpt`` read with ``torch.load(weights_only=True)``;
state dicts wrapped as ``{"state_dict": ...}``, ``{"model": ...}``, ``{"model_state_dict": ...}``
or ``{"net": ...}``; ``module.`` prefixes from DataParallel; Lightning's ``model.`` prefix; and the
pre-0.4 torchvision DenseNet key names (``norm.1`` -> ``norm1``, as in CheXNet checkpoints).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

_WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "module")
_OLD_DENSENET = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


class CheckpointError(ValueError):
    """Weights that do not fit the model; the message lists what is missing, unexpected or misshapen."""


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, unwrapped. Never executes code from the file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickles with code are refused here, by design
        raise CheckpointError(
            f"{path}: cannot read weights safely ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
            "Save a plain state_dict (torch.save(model.state_dict(), ...)) or safetensors."
        ) from None
    for _ in range(3):
        if isinstance(data, dict) and not _is_tensor_dict(data):
            inner = next((data[k] for k in _WRAPPERS if k in data and isinstance(data[k], dict)), None)
            if inner is None:
                break
            data = inner
    if not isinstance(data, dict) or not _is_tensor_dict(data):
        raise CheckpointError(f"{path}: no state dict of tensors found")
    return data


def _is_tensor_dict(data: dict) -> bool:
    return bool(data) and all(isinstance(v, torch.Tensor) for v in data.values())


def normalise_keys(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes and rename legacy keys so they match ``model``'s own names."""
    expected = set(model.state_dict())
    out = {}
    for key, value in state.items():
        new = _OLD_DENSENET.sub(r"\1\2", key)
        for prefix in ("module.", "model.", "net."):
            if new.startswith(prefix) and new not in expected and new[len(prefix) :] in expected:
                new = new[len(prefix) :]
        out[new] = value
    return out


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a weights file into ``model`` strictly, or raise :class:`CheckpointError` saying why."""
    state = normalise_keys(read_state_dict(path), model)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshapen = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    if missing or unexpected or misshapen:
        parts = []
        for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen)):
            if items:
                shown = ", ".join(items[:8]) + (f" (and {len(items) - 8} more)" if len(items) > 8 else "")
                parts.append(f"{len(items)} {title}: {shown}")
        raise CheckpointError(f"{path}: weights do not fit the model: " + "; ".join(parts))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
