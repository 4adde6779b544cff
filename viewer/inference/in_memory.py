"""A :class:`LoadedModel` made from a network the caller already holds in memory (a notebook's own
``nn.Module``), without a manifest file or a weights file.

The network is the caller's object, not a copy: the maps explain the weights as they are now,
and a training loop may go on between calls. That is why the viewer must give the module back as
it found it: :func:`borrowed` puts it in eval mode for the duration of a computation and then
restores every submodule's ``training`` flag and every parameter's ``requires_grad`` and ``grad``.
Hooks are only ever added for one forward pass (``probe_layers``, ``record``) and removed in
``finally`` blocks there.

What a manifest would say is inferred where the network shows it: the labels' count from one
probing forward pass (named ``"0".."K-1"`` unless given), the target layer as for any model
(the last module that keeps a spatial grid), and the task: a network whose last module is
``nn.Softmax`` or ``nn.Sigmoid`` outputs probabilities itself; otherwise one output is read as a
sigmoid score and several as softmax classes, unless ``task`` is given. Probing once per network
and input shape is remembered (weakly, by the network), so repeated calls cost what the methods
cost and no more.
"""

from __future__ import annotations

import difflib
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from viewer.inference.built import Built
from viewer.inference.feature_grid import LayerOutput, probe_layers
from viewer.inference.manifest import InputSpec, ManifestError, ModelManifest, Task
from viewer.inference.model import LoadedModel

FAMILY = "in-memory"
# An in-memory model's manifest.path and weights: a placeholder that names no file (see is_in_memory).
_PREFIX = "<in-memory "


class NetworkError(ValueError):
    """An in-memory network that cannot be used as given; the message says why and what would do."""


@dataclass(frozen=True)
class _Probe:
    """What one probing pass found, remembered per network, input shape and structure."""

    layers: list[LayerOutput]
    width: int
    last_kind: str


_PROBES: weakref.WeakKeyDictionary[nn.Module, dict[tuple, _Probe]] = weakref.WeakKeyDictionary()


@contextmanager
def borrowed(network: nn.Module) -> Iterator[nn.Module]:
    """``network`` in eval mode within the block, and afterwards exactly as it was: each module's
    ``training`` flag, each parameter's ``requires_grad`` and ``grad``."""
    modes = [(m, m.training) for m in network.modules()]
    params = [(p, p.requires_grad, p.grad) for p in network.parameters()]
    network.eval()
    try:
        yield network
    finally:
        for module, training in modes:
            module.training = training
        for p, requires_grad, grad in params:
            if p.requires_grad != requires_grad:
                p.requires_grad_(requires_grad)
            if p.grad is not grad:
                p.grad = grad


def is_in_memory(path: str | Path | None) -> bool:
    """Whether a manifest path is an in-memory model's placeholder: there is no file to read,
    check, trust or remember for it (the model store holds the model itself)."""
    return path is not None and str(path).startswith(_PREFIX)


def network_device(network: nn.Module) -> torch.device:
    """Where the network's weights are: inputs go there, and the network is never moved."""
    tensor = next(network.parameters(), None)
    if tensor is None:
        tensor = next(network.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def layer_name(network: nn.Module, layer: str | nn.Module | None) -> str | None:
    """The dotted name (as ``named_modules()`` gives it) of ``layer``: a name or the module itself.
    A name that is not a module raises :class:`NetworkError` listing the nearest names."""
    if layer is None:
        return None
    names = {module: name for name, module in network.named_modules() if name}
    if isinstance(layer, nn.Module):
        if layer not in names:
            raise NetworkError(f"layer {type(layer).__name__} is not a submodule of this network")
        return names[layer]
    if layer in names.values():
        return layer
    near = difflib.get_close_matches(layer, list(names.values()), n=5, cutoff=0.5)
    listed = list(names.values())
    shown = ", ".join(near) if near else ", ".join(listed[:12]) + (" ..." if len(listed) > 12 else "")
    raise NetworkError(
        f"layer {layer!r} is not a module of {type(network).__name__}; "
        + (f"nearest: {shown}" if near else f"its modules: {shown}")
    )


def _probe(network: nn.Module, input_shape: tuple[int, ...]) -> _Probe:
    structure = tuple((name, type(m).__name__) for name, m in network.named_modules())
    key = (input_shape, hash(structure))
    cached = _PROBES.get(network, {}).get(key)
    if cached is not None:
        return cached
    outputs: list[torch.Tensor] = []
    handle = network.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    try:
        layers = probe_layers(network, input_shape)
    except RuntimeError as exc:
        raise NetworkError(
            f"{type(network).__name__} does not run on an input of shape {(1, *input_shape)}: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    finally:
        handle.remove()
    out = outputs[-1] if outputs else None
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise NetworkError(
            f"{type(network).__name__} outputs {shape}; the viewer explains classifiers that "
            "output one row of scores per image, (batch, classes)"
        )
    probe = _Probe(layers, int(out.shape[1]), layers[-1].kind if layers else "")
    _PROBES.setdefault(network, {})[key] = probe
    return probe


def _head(probe: _Probe, task: Task | None) -> tuple[Task, str]:
    """The task and what the network's output is: ``"logits"``, or ``"probabilities"`` when its
    last module is a Softmax or Sigmoid (then the viewer applies nothing more)."""
    if probe.last_kind in ("Softmax", "Sigmoid"):
        return task or ("multiclass" if probe.last_kind == "Softmax" else "multilabel"), "probabilities"
    return task or ("multilabel" if probe.width == 1 else "multiclass"), "logits"


def first_in_channels(network: nn.Module) -> int | None:
    """The input channels of the first convolution, where the network shows them."""
    for module in network.modules():
        if isinstance(module, nn.Conv2d | nn.Conv3d):
            return int(module.in_channels)
    return None


def model_from_network(
    network: nn.Module,
    *,
    input_shape: tuple[int, int, int],
    labels: Sequence[str] | None = None,
    task: Task | None = None,
    layer: str | nn.Module | None = None,
    spec: InputSpec | None = None,
    name: str | None = None,
) -> LoadedModel:
    """A :class:`LoadedModel` on ``network`` itself, for inputs ``(C, H, W)``.

    Call it (and use the model) inside :func:`borrowed`: the network must be in eval mode while
    it is probed and explained. ``spec`` is the ``[input]`` pipeline for images that are not
    already network inputs (default: the input size as it is, no normalisation)."""
    if not isinstance(network, nn.Module):
        raise NetworkError(f"expected a torch.nn.Module, got {type(network).__name__}")
    if task not in (None, "multilabel", "multiclass"):
        raise NetworkError(f"task must be 'multilabel' or 'multiclass', not {task!r}")
    channels, height, width = input_shape
    probe = _probe(network, tuple(input_shape))
    names = tuple(str(v) for v in labels) if labels is not None else tuple(str(i) for i in range(probe.width))
    if len(names) != probe.width:
        raise NetworkError(
            f"{len(names)} labels given, but {type(network).__name__} outputs {probe.width} scores per image"
        )
    if len(set(names)) != len(names):
        raise NetworkError("labels must be unique")
    task, output = _head(probe, task)
    title = name or type(network).__name__
    location = Path(f"{_PREFIX}{title}>")
    manifest = ModelManifest(
        path=location,
        name=title,
        task=task,
        labels=names,
        arch=FAMILY,
        weights=location,
        in_channels=channels,
        input=replace(spec, size=(height, width)) if spec is not None else InputSpec(size=(height, width)),
        target_layer=layer_name(network, layer),
        output=output,
    )
    built = Built(network, FAMILY, weights_inside=True)
    try:
        return LoadedModel(manifest, str(network_device(network)), built=built, layers=probe.layers)
    except ManifestError as exc:
        raise NetworkError(f"{title}: {exc.reason}") from None


__all__ = [
    "FAMILY",
    "NetworkError",
    "borrowed",
    "is_in_memory",
    "layer_name",
    "model_from_network",
    "network_device",
]
