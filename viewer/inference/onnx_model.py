"""ONNX models (a Keras model through tf2onnx, a PyTorch export) as PyTorch modules, so that every
gradient and CAM method works on them.

onnx2torch turns the graph into a ``torch.fx`` module whose layers are real modules (``Conv2d``,
``ReLU``, ...), which hooks and the ReLU rules see. Two things of exports are undone:

- Keras works channels last, and tf2onnx keeps its input ``(N, H, W, C)``: such a network gets
  its input permuted from the viewer's ``(N, C, H, W)``.
- A last ``Sigmoid``/``Softmax`` node (Keras' ``Dense(..., activation="sigmoid")``) is taken off
  the graph and applied by the viewer instead (see :mod:`viewer.inference.output_head`).

Reading an ONNX file parses a protobuf: nothing in it is executed as Python. Before conversion
:mod:`viewer.inference.onnx_check` refuses operators outside the standard ONNX set and external
data outside the model's folder.
"""

from __future__ import annotations

import torch
from torch import fx, nn

from viewer.inference.built import Built
from viewer.inference.manifest import ManifestError, ModelManifest


class ChannelsLast(nn.Module):
    """Feeds a channels-last network from channels-first input."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.onnx = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.onnx(x.permute(0, 2, 3, 1))


class ChannelsFirst(nn.Module):
    def __init__(self, network: nn.Module):
        super().__init__()
        self.onnx = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.onnx(x)


def _input_dims(model) -> list:
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ValueError(f"the model has {len(inputs)} inputs; the viewer feeds one image tensor")
    dims = inputs[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def channels_last(dims: list, channels: int) -> bool:
    """Whether an image input of ``dims`` is ``(N, H, W, C)`` for ``channels`` channels."""
    if len(dims) != 4:
        raise ValueError(f"the model's input has {len(dims)} dimensions; an image input has 4")
    if dims[1] == channels:
        return False
    if dims[3] == channels:
        return True
    raise ValueError(
        f"the model's input {['?' if d is None else d for d in dims]} has no axis of "
        f"{channels} channels (network.in_channels)"
    )


def _final_activation(graph: fx.GraphModule) -> tuple[fx.Node, str] | None:
    output = next(n for n in graph.graph.nodes if n.op == "output")
    result = output.args[0]
    if not isinstance(result, fx.Node):
        raise ValueError("the model has more than one output; the viewer reads one vector of scores")
    if result.op == "call_module":
        module = graph.get_submodule(result.target)
        kind = type(module).__name__
        if isinstance(module, nn.Sigmoid):
            return result, "sigmoid"
        if isinstance(module, nn.Softmax) or (kind.startswith("OnnxSoftmax") and not module.is_log):
            return result, "softmax"
    if result.op == "call_function" and result.target in (torch.sigmoid, torch.softmax):
        return result, "sigmoid" if result.target is torch.sigmoid else "softmax"
    return None


def strip_final_activation(graph: fx.GraphModule) -> str | None:
    """Remove a last sigmoid/softmax node from ``graph`` in place; the activation removed."""
    found = _final_activation(graph)
    if found is None:
        return None
    node, activation = found
    output = next(n for n in graph.graph.nodes if n.op == "output")
    output.args = (node.args[0],)
    graph.graph.erase_node(node)
    graph.graph.eliminate_dead_code()
    graph.delete_all_unused_submodules()
    graph.recompile()
    return activation


def convert_onnx(manifest: ModelManifest) -> Built:
    import onnx
    from onnx.external_data_helper import load_external_data_for_model
    from onnx2torch import convert

    from viewer.inference.onnx_check import OnnxRefused, check_onnx

    try:
        model = onnx.load(str(manifest.weights), load_external_data=False)
        check_onnx(model, manifest.weights.parent)
        load_external_data_for_model(model, str(manifest.weights.parent))
        onnx.checker.check_model(model)
        nhwc = channels_last(_input_dims(model), manifest.in_channels)
        graph = convert(model)
    except ManifestError:
        raise
    except OnnxRefused as exc:
        raise ManifestError(manifest.path, f"{manifest.weights.name} is refused: {exc}") from None
    except Exception as exc:  # a damaged file or an operator onnx2torch lacks: name it, on one line
        reason = "; ".join(line.strip(" =>") for line in str(exc).splitlines() if line.strip())[:300]
        raise ManifestError(
            manifest.path, f"cannot convert {manifest.weights.name}: {reason or type(exc).__name__}"
        ) from None
    activation = None
    if manifest.output != "logits":
        try:
            activation = strip_final_activation(graph)
        except ValueError as exc:
            raise ManifestError(manifest.path, f"{manifest.weights.name}: {exc}") from None
    built = Built(ChannelsLast(graph) if nhwc else ChannelsFirst(graph), "onnx", weights_inside=True)
    built.activation, built.activation_source = activation, "the ONNX graph's last node"
    if nhwc:
        built.notes.append("channels-last (Keras) input: the viewer permutes (N, C, H, W) to (N, H, W, C)")
    if activation:
        built.notes.append(f"the graph's last node, {activation}, is applied by the viewer")
    return built


__all__ = ["ChannelsLast", "channels_last", "convert_onnx", "strip_final_activation"]
