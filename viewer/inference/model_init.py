"""``model init``: a manifest written from what a weights file shows about itself.

A researcher has ``model.pt2``, ``net.onnx``, a TorchScript file or a state dict, and no
``manifest.toml``. What the file holds is read as data (the same checks and safe readers as
loading) and the rest inferred:

- a graph file (``.pt2``, ONNX, TorchScript) is the network: its input channels and size come
  from the graph's input where it records them, its output width from the graph's output, and a
  last ``softmax``/``sigmoid`` says the outputs are probabilities (and the task);
- a state dict is matched against the registry's builders (torchvision ResNet, DenseNet,
  EfficientNet, VGG, MobileNet, ConvNeXt, RegNet; TorchXRayVision's DenseNet; a few timm CNNs
  when timm is installed): each candidate is built on the ``meta`` device (no memory, no
  weights) and must have exactly the file's keys (after the usual wrapper renames) and shapes,
  save the classifier's width and the first convolution's channels, which are read from the file.

What cannot be inferred (the labels) is the caller's to supply. Each reader is one entry of
``READERS``, tried in order by the file's content, never by its name alone.
"""

from __future__ import annotations

import importlib.util
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision
from torch import nn

from viewer.inference.checkpoint import CheckpointError, match_keys, read_checkpoint


class InitError(ValueError):
    """Nothing the viewer knows matched the file; the message names what was tried."""


@dataclass
class Inferred:
    """What a weights file says about the network it holds."""

    arch: str
    in_channels: int
    size: tuple[int, int] | None  # None: the file does not record it
    outputs: int | None
    output: str = "auto"  # "probabilities" when the graph ends in softmax/sigmoid
    task: str = "multilabel"
    notes: list[str] = field(default_factory=list)


def _graph_head(last: str | None) -> tuple[str, str]:
    """``(output, task)`` from the graph's last operator."""
    if last in ("softmax", "_softmax", "Softmax", "aten::softmax"):
        return "probabilities", "multiclass"
    if last in ("sigmoid", "Sigmoid", "aten::sigmoid"):
        return "probabilities", "multilabel"
    return "logits", "multilabel"


def _pt2(path: Path) -> Inferred | None:
    if not _zip_has(path, "/archive_format"):
        return None
    from viewer.inference.exported_check import check_exported_program
    from viewer.inference.exported_program import load_checked_program

    check = check_exported_program(path)
    if not check.safe:
        raise InitError(f"{path.name} {check.reason()}; trust it first: saliency-viewer model trust {path}")
    program = load_checked_program(path)
    user = set(program.graph_signature.user_inputs)
    (x,) = [n.meta["val"] for n in program.graph.nodes if n.op == "placeholder" and n.name in user]
    out = next(n for n in program.graph.nodes if n.op == "output").args[0]
    out = out[0] if isinstance(out, tuple | list) else out
    last = getattr(out.target, "__name__", "").split(".")[0] if out.op == "call_function" else None
    output, task = _graph_head(last)
    return Inferred(
        "pt2",
        int(x.shape[1]),
        (int(x.shape[-2]), int(x.shape[-1])),
        int(out.meta["val"].shape[-1]),
        output,
        task,
    )


def _onnx(path: Path) -> Inferred | None:
    with open(path, "rb") as f:
        if f.read(1) != b"\x08":  # an ONNX ModelProto starts with its ir_version field
            return None
    if importlib.util.find_spec("onnx") is None:
        raise InitError(f"{path.name} looks like ONNX, which needs: pip install 'saliency-viewer[onnx]'")
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # a protobuf that is not an ONNX model: let the next reader try
        return None
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or not model.graph.output:
        return None
    dims = [d.dim_value or None for d in inputs[0].type.tensor_type.shape.dim]
    outs = [d.dim_value or None for d in model.graph.output[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        return None
    channels_last = dims[3] in (1, 3) and dims[1] not in (1, 3)
    c, h, w = (dims[3], dims[1], dims[2]) if channels_last else (dims[1], dims[2], dims[3])
    producer = {o: n.op_type for n in model.graph.node for o in n.output}.get(model.graph.output[0].name)
    output, task = _graph_head(producer)
    inferred = Inferred(
        "onnx", int(c or 3), (h, w) if h and w else None, outs[-1] if outs else None, output, task
    )
    if channels_last:
        inferred.notes.append("the graph takes channels last (NHWC); the viewer permutes its input")
    return inferred


def _torchscript(path: Path) -> Inferred | None:
    if not _zip_has(path, "/code/"):
        return None
    from viewer.inference.torchscript_check import check_torchscript

    check = check_torchscript(path)
    if not check.safe:
        raise InitError(f"{path.name} {check.reason()}; trust it first: saliency-viewer model trust {path}")
    network = torch.jit.load(str(path), map_location="cpu")
    conv = next((p for n, p in network.named_parameters() if p.dim() == 4), None)
    channels = int(conv.shape[1]) if conv is not None else 3
    graph = network.inlined_graph
    outputs = list(graph.return_node().inputs())
    last = outputs[0].node().kind() if len(outputs) == 1 else None
    output, task = _graph_head(last)
    inferred = Inferred("torchscript", channels, None, None, output, task)
    for size in (224, 256, 512, 299, 128, 64):  # the file does not record its input size
        try:
            with torch.no_grad():
                out = network(torch.zeros(1, channels, size, size))
        except RuntimeError:
            continue
        inferred.size, inferred.outputs = (size, size), int(out.shape[-1])
        inferred.notes.append(f"the file does not record its input size: it runs on {size} x {size}")
        break
    return inferred


# State dicts: candidate builders, by family; each built on the meta device to compare.
_TORCHVISION = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "densenet121", "densenet161",
    "densenet169", "densenet201", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2",
    "efficientnet_b3", "efficientnet_b4", "efficientnet_v2_s", "vgg11", "vgg13", "vgg16", "vgg19",
    "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "mobilenet_v2", "mobilenet_v3_small",
    "mobilenet_v3_large", "convnext_tiny", "convnext_small", "regnet_y_400mf", "regnet_y_800mf",
)  # fmt: skip
_TIMM = ("resnet18", "resnet50", "densenet121", "efficientnet_b0", "convnext_tiny")


def _candidates() -> list[tuple[str, Callable[[], nn.Module]]]:
    found: list[tuple[str, Callable[[], nn.Module]]] = [
        (name, lambda name=name: torchvision.models.get_model(name, weights=None)) for name in _TORCHVISION
    ]
    if importlib.util.find_spec("torchxrayvision") is not None:
        import torchxrayvision as xrv

        found.append(("xrv:densenet121", lambda: xrv.models.DenseNet(weights=None, num_classes=18)))
    if importlib.util.find_spec("timm") is not None:
        import timm

        found += [(f"timm:{n}", lambda n=n: timm.create_model(n, pretrained=False)) for n in _TIMM]
    return found


def _state_dict(path: Path) -> Inferred | None:
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError:
        return None
    state = {k: v for k, v in checkpoint.state.items() if not k.endswith("num_batches_tracked")}
    tried = []
    for arch, make in _candidates():
        tried.append(arch)
        expected = {k: v for k, v in _shapes_of(make).items() if not k.endswith("num_batches_tracked")}
        matched, _ = match_keys(state, expected)
        if set(matched) != set(expected):
            continue
        fit = _fit(matched, expected)
        if fit is not None:
            channels, classes = fit
            output = "probabilities" if checkpoint.activation else "logits"
            task = "multiclass" if checkpoint.activation == "softmax" else "multilabel"
            inferred = Inferred(arch, channels, None, classes, output, task)
            inferred.notes.append("a state dict does not record the input size: 224 x 224 assumed")
            return inferred
    raise InitError(
        f"{path.name} holds a state dict of {len(state)} tensors that matches none of the architectures "
        f"tried: {', '.join(tried)}; write the manifest by hand (network.arch, see docs/models.md)"
    )


def _shapes_of(make: Callable[[], nn.Module]) -> dict[str, torch.Tensor]:
    """The candidate's state dict, built on the meta device (no memory, no initialisation), or
    on the CPU for a builder that computes on its weights while building."""
    try:
        with torch.device("meta"):
            return make().state_dict()
    except (NotImplementedError, RuntimeError):
        return make().state_dict()


def _fit(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> tuple[int, int] | None:
    """``(in_channels, classes)`` when every shape agrees but the first convolution's input
    channels and the classifier's width (the last 2-D weight and its bias); else None."""
    keys = list(expected)
    first = next(k for k in keys if expected[k].dim() >= 4)
    head = next(k for k in reversed(keys) if expected[k].dim() == 2)
    bias = head.removesuffix("weight") + "bias"
    for key in keys:
        saved, own = tuple(state[key].shape), tuple(expected[key].shape)
        if key == first:
            own = (own[0], saved[1], *own[2:]) if len(saved) == len(own) else own
        elif key in (head, bias):
            own = (saved[0], *own[1:]) if len(saved) == len(own) else own
        if saved != own:
            return None
    return int(state[first].shape[1]), int(state[head].shape[0])


def _zip_has(path: Path, fragment: str) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(fragment in f"/{name}" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


# How each kind of file is recognised and read, tried in order; a reader returns None when the
# file is not its kind.
READERS: dict[str, Callable[[Path], Inferred | None]] = {
    "torch.export program": _pt2,
    "TorchScript": _torchscript,
    "ONNX": _onnx,
    "state dict": _state_dict,
}


def infer_model(path: Path) -> Inferred:
    """What ``path`` holds, as far as the file says."""
    path = Path(path)
    if not path.is_file():
        raise InitError(f"{path}: no such file")
    for reader in READERS.values():
        found = reader(path)
        if found is not None:
            return found
    raise InitError(f"{path.name}: not a file the viewer reads (tried: {', '.join(READERS)})")


def _quoted(values) -> str:
    return ", ".join(f'"{_escape(v)}"' for v in values)


def _escape(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace('"', '\\"')


def manifest_text(weights: Path, found: Inferred, labels: list[str], name: str) -> str:
    """The manifest for ``found``, ready for ``load_manifest``."""
    height, width = found.size or (224, 224)
    lines = [
        f'name = "{_escape(name)}"',
        f'task = "{found.task}"',
        f"labels = [{_quoted(labels)}]",
        "",
        "[network]",
        f'arch = "{found.arch}"',
        f'weights = "{_escape(weights.name)}"',
        f"in_channels = {found.in_channels}",
        f'output = "{found.output}"',
        "",
        "[input]",
        f"size = [{height}, {width}]",
        'resize = "letterbox"',
        'intensity = "voi"',
        f"mean = [{', '.join(['0.5'] * found.in_channels)}]",
        f"std = [{', '.join(['0.25'] * found.in_channels)}]",
    ]
    notes = [f"# {note}" for note in found.notes]
    notes.append("# written by saliency-viewer model init: check input.mean/std against your training")
    return "\n".join([*notes, *lines]) + "\n"


def parse_labels(text: str, outputs: int | None) -> list[str]:
    """Comma-separated label names, one per output in output order (the command line's
    ``--labels`` and the window's question); ``InitError`` says what is wrong with them."""
    labels = [label.strip() for label in text.split(",") if label.strip()]
    if not labels or len(set(labels)) != len(labels):
        raise InitError("the labels must be distinct, non-empty names")
    if outputs is not None and len(labels) != outputs:
        raise InitError(f"the network has {outputs} outputs but {len(labels)} labels were given")
    return labels


def write_manifest(weights: Path, text: str, force: bool = False) -> Path:
    """``manifest.toml`` beside ``weights``, written whole or not at all; an existing one is
    replaced only with ``force``."""
    from viewer.io.atomic import replace_bytes

    target = Path(weights).parent / "manifest.toml"
    if target.exists() and not force:
        raise InitError(f"{target} already exists; pass --force to replace it")
    replace_bytes(target, text.encode("utf-8"))
    return target


__all__ = [
    "READERS", "Inferred", "InitError", "infer_model", "manifest_text", "parse_labels", "write_manifest"
]  # fmt: skip
