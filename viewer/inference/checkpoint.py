"""Load weights from the files people actually have, without ever running code from them.

Read by content, whatever the file is called (``checkpoint`` with no suffix included): safetensors
(header checked before anything is read), or a ``torch.save`` file read as data
(:mod:`viewer.inference.torch_files`): a state dict, or a whole pickled model whose weights are
read from its saved attributes without building it (:mod:`viewer.inference.safe_pickle` says
which network classes it may name). The network itself is always the viewer's own build of the
manifest's architecture; the file only fills in its tensors. Wrappers are unwrapped: ``{"state_dict": ...}``,
``{"model": ...}`` (a state dict or a module), ``{"model_state_dict": ...}``, ``{"net": ...}``,
Lightning checkpoints.

Keys are matched to the architecture's own, in this order: the manifest's ``[network.key_map]``
prefix renames; the pre-0.4 torchvision DenseNet names (``norm.1`` -> ``norm1``, as in CheXNet);
wrapper prefixes of any depth (``module.``, ``densenet121.``, ``backbone.``, ``model.``, ...),
found by stripping leading names until the key is one of the architecture's; and classifier heads
saved as ``Sequential(Linear, Sigmoid)`` (``classifier.0.weight`` -> ``classifier.weight``). Every
rename is recorded, and a mismatch names what is missing, unexpected or misshapen, and the renames
that were tried.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn

from viewer.inference.pickle_data import SavedModule
from viewer.inference.safe_pickle import UnsafePickleError, head_activation, plain
from viewer.inference.safetensors_header import SafetensorsError, check_safetensors
from viewer.inference.torch_files import read_pickled

_WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "module")
_OLD_DENSENET = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)
_SEQUENTIAL_HEAD = re.compile(r"^(.*)\.(\d+)\.(weight|bias)$")


# What reading a damaged file raises, beyond the readers' own refusals.
_DAMAGED = (
    OSError, EOFError, ValueError, RuntimeError, MemoryError, zipfile.BadZipFile, zlib.error, SafetensorError,
)  # fmt: skip


class CheckpointError(ValueError):
    """Weights that cannot be read safely, or do not fit the model; the message says which and why."""


@dataclass
class Checkpoint:
    """The tensors of a weights file and what was learnt reading it."""

    state: dict[str, torch.Tensor]
    whole_model: SavedModule | None = None  # when the file held a pickled network (read as data)
    activation: str | None = None  # "sigmoid"/"softmax" the saved network applied to its logits
    renames: list[str] = field(default_factory=list)


def _is_safetensors(path: Path) -> bool:
    # safetensors: an 8-byte little-endian header length, then the JSON header itself.
    # (Lengths are checked against the file by check_safetensors, which names what is wrong.)
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def read_checkpoint(path: Path) -> Checkpoint:
    """The state dict in a weights file, unwrapped; a whole model gives its own state dict."""
    path = Path(path)
    try:
        if _is_safetensors(path):
            check_safetensors(path)
            from safetensors.torch import load_file

            return Checkpoint(load_file(str(path)))
        data = read_pickled(path)
        module = None
        for _ in range(3):
            if isinstance(data, SavedModule):
                module, data = data, data.state_dict()
            if isinstance(data, dict) and not _is_tensor_dict(data):
                wrapped = (data[k] for k in _WRAPPERS if isinstance(data.get(k), dict | SavedModule))
                inner = next(wrapped, None)
                if inner is None:
                    break
                data = inner
    except (UnsafePickleError, SafetensorsError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except _DAMAGED as exc:  # a damaged or foreign file: say so, without the library's formatting
        reason = plain(str(exc)).splitlines()[0][:200] if str(exc).strip() else "no detail"
        raise CheckpointError(f"{path}: cannot read weights ({type(exc).__name__}: {reason})") from None
    if not isinstance(data, dict) or not _is_tensor_dict(data):
        raise CheckpointError(f"{path}: no state dict of tensors found")
    activation = None
    if module is not None:
        leaves = [m.cls for _, m in module.named_modules() if not any(True for _ in m.children())]
        activation = head_activation(leaves)
    return Checkpoint(data, module, activation)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, unwrapped. Never executes code from the file."""
    return read_checkpoint(path).state


def _is_tensor_dict(data: dict) -> bool:
    return bool(data) and all(isinstance(v, torch.Tensor) for v in data.values())


def match_keys(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], key_map: Mapping[str, str] = {}
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``state`` with its keys renamed to ``expected``'s where the names differ only by wrappers,
    legacy names or a Sequential head; and a description of each kind of rename applied."""
    stripped: Counter[str] = Counter()
    renames: list[str] = []
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key
        for old, replacement in key_map.items():
            if new.startswith(old):
                new = replacement + new[len(old) :]
                stripped[f"{old} -> {replacement}"] += 1
                break
        legacy = _OLD_DENSENET.sub(r"\1\2", new)
        if legacy != new:
            stripped["pre-0.4 DenseNet names (norm.1 -> norm1)"] += 1
            new = legacy
        candidate, prefix = _strip_to(new, expected)
        if candidate in out or (candidate in state and candidate != key):
            candidate, prefix = new, ""  # two keys for one name: leave it to be reported
        if prefix:
            stripped[f"prefix {prefix}"] += 1
        out[candidate] = value
    # A head saved as Sequential(Linear, activation): classifier.0.weight -> classifier.weight.
    missing = set(expected) - set(out)
    for key in [k for k in out if k not in expected]:
        match = _SEQUENTIAL_HEAD.match(key)
        if match is None:
            continue
        target, prefix = _strip_to(f"{match[1]}.{match[3]}", missing)
        if target in missing:
            out[target] = out.pop(key)
            missing.discard(target)
            head = match[1][len(prefix) :]
            stripped[f"Sequential head {head}.{match[2]}.* -> {head}.*"] += 1
            if prefix:
                stripped[f"prefix {prefix}"] += 1
    renames = [f"{what} ({count} keys)" for what, count in stripped.items()]
    return out, renames


def _strip_to(key: str, names) -> tuple[str, str]:
    """``key`` without the fewest leading names that make it one of ``names``, and the prefix
    removed; ``key`` itself and "" when no suffix of it is a name."""
    parts = key.split(".")
    for depth in range(len(parts)):
        candidate = ".".join(parts[depth:])
        if candidate in names:
            return candidate, ".".join(parts[:depth]) + ("." if depth else "")
    return key, ""


def _saved_as(checkpoint: Checkpoint, model: nn.Module) -> str:
    """For a pickled network of another class than the manifest builds: say both (a DenseNet
    saved whole, network.arch naming a ResNet), the likeliest cause of a mismatch."""
    saved = checkpoint.whole_model
    if saved is None or any(isinstance(m, saved.cls) for m in model.modules()):
        return ""
    return (
        f"; the file holds a pickled {saved.cls.__module__}.{saved.cls.__qualname__} and network.arch "
        f"builds a {type(model).__module__}.{type(model).__qualname__}: name the one it was saved as"
    )


def load_weights(model: nn.Module, path: Path, key_map: Mapping[str, str] = {}) -> Checkpoint:
    """Load a weights file into ``model`` strictly, or raise :class:`CheckpointError` saying why.
    Returns what was read, with the renames applied."""
    checkpoint = read_checkpoint(path)
    own = model.state_dict()
    saved_metadata = getattr(checkpoint.state, "_metadata", None)
    state, checkpoint.renames = match_keys(checkpoint.state, own, key_map)
    # BatchNorm's step counter, which FrozenBatchNorm2d does not keep: a detector fine-tuned from
    # pretrained torchvision weights saves its body without it, and the viewer builds plain
    # BatchNorm (nothing downloaded). It is never read in eval mode: take the network's own.
    for key in set(own) - set(state):
        if key.endswith(".num_batches_tracked"):
            state[key] = own[key]
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
        tried = "; renames applied: " + ", ".join(checkpoint.renames) if checkpoint.renames else ""
        tried += _saved_as(checkpoint, model)
        raise CheckpointError(
            f"{path}: weights do not fit the model: " + "; ".join(parts) + tried
            + " (add [network.key_map] \"old.prefix.\" = \"new.prefix.\" to the manifest for other names)"
        )  # fmt: skip
    fixed = OrderedDict((k, v.to(own[k].dtype)) for k, v in state.items())
    # Per-module versions (MNASNet refuses a state dict without one): the file's where its names
    # were kept, else the architecture's own.
    fixed._metadata = (
        saved_metadata if saved_metadata is not None and not checkpoint.renames else own._metadata
    )
    model.load_state_dict(fixed, strict=True)
    checkpoint.state = state
    return checkpoint


__all__ = [
    "Checkpoint",
    "CheckpointError",
    "load_weights",
    "match_keys",
    "read_checkpoint",
    "read_state_dict",
]
