"""ONNX models (a Keras model through tf2onnx, a PyTorch export) as PyTorch modules, so that every
gradient and CAM method works on them.

onnx2torch turns the graph into a ``torch.fx`` module whose layers are real modules (``Conv2d``,
``ReLU``, ...), which hooks and the ReLU rules see. Three things of exports are undone:

- Exporters write graphs onnx2torch does not take as they are: weights shared through
  ``Identity`` nodes or held in ``Constant`` nodes (PyTorch's TorchScript exporter), opsets past
  17 (the torch.export-based exporter). :func:`prepare_graph` folds constants into initializers
  and brings the graph down to opset 17, keeping what it computes.
- Keras works channels last, and tf2onnx keeps its input ``(N, H, W, C)``: such a network gets
  its input permuted from the viewer's ``(N, C, H, W)``.
- A last ``Sigmoid``/``Softmax`` node (Keras' ``Dense(..., activation="sigmoid")``) is taken off
  the graph and applied by the viewer instead (see :mod:`viewer.inference.output_head`).

Reading an ONNX file parses a protobuf: nothing in it is executed as Python. Before conversion
:mod:`viewer.inference.onnx_check` refuses operators outside the standard ONNX set and external
data outside the model's folder; only then is the graph prepared (folding computes constants
with ONNX's reference implementation, in NumPy).
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
        prepare_graph(model)
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


# --- Graphs as exporters write them -------------------------------------------------------------

# Operators whose output is not a function of their inputs (folding one would freeze one draw).
_RANDOM = {
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
}
# How many elements a folded constant may have beyond its inputs' (Expand, Tile, ConstantOfShape
# can make a tensor far larger than the file; those stay nodes and run in the graph).
_FOLD_GROWTH = 1 << 16
# The newest opset onnx2torch 1.5 converts throughout; newer graphs are brought down to it.
_TORCH_OPSET = 17


def prepare_graph(model) -> None:
    """Rewrite ``model`` (checked, external data loaded) in place into a graph onnx2torch converts,
    with the same outputs for every input:

    - constants folded into initializers: ``Constant`` nodes, ``Identity`` nodes (PyTorch's
      TorchScript exporter shares identical weights through them), and any node computed from
      constants alone (a ``Cast`` of half weights, a ``Transpose`` of a kernel), as onnx2torch
      reads a Conv's weights, a Transpose's ``perm`` and a reduction's ``axes`` from initializers
      only; each is computed by ONNX's reference implementation;
    - a graph of an opset newer than onnx2torch's (the torch.export-based exporter writes 18 and
      up, where ``ReduceMean`` takes its axes as an input) brought down to opset 17 by ONNX's
      version converter, when one of its nodes has no converter at its own opset;
    - ``Reshape(allowzero=1)`` with a constant shape free of zeros, where ``allowzero`` changes
      nothing, written without it.
    """
    fold_constants(model)
    if _unconvertible(model) and _opset(model) > _TORCH_OPSET:
        lowered = _lowered(model)
        if lowered is not None:
            model.CopyFrom(lowered)
            fold_constants(model)
    _drop_idle_allowzero(model)


def _lowered(model):
    """``model`` at opset 17 by ONNX's version converter, or None where it has no way there."""
    import onnx
    from onnx import version_converter

    try:
        lowered = version_converter.convert_version(model, _TORCH_OPSET)
        # Its 18 -> 17 adapter of the reductions moves ``axes`` to an attribute but leaves
        # ``noop_with_empty_axes``, which opset 17's ReduceMean (and friends) do not have; with
        # axes given, or at 0 (reduce all when none are), it changes nothing and goes.
        for node in lowered.graph.node:
            noop = [a for a in node.attribute if a.name == "noop_with_empty_axes"]
            if noop and node.op_type != "ReduceSum" and node.op_type.startswith("Reduce"):
                axes = any(a.name == "axes" and a.ints for a in node.attribute)
                if noop[0].i and not axes:
                    return None
                node.attribute.remove(noop[0])
        onnx.checker.check_model(lowered)
    except Exception:  # no adapter for some node: onnx2torch names the operator it lacks
        return None
    return lowered


def fold_constants(model) -> int:
    """Replace the main graph's nodes whose inputs are all constants by initializers holding their
    outputs; unused initializers are dropped. Returns how many nodes were folded."""
    import numpy as np
    from onnx import TensorProto, numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    sizes = _inferred_sizes(model)
    initializers = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    opsets = {o.domain or "": o.version for o in model.opset_import}
    kept, folded = [], []
    for node in graph.node:
        if not _foldable(node, initializers, outputs, sizes):
            kept.append(node)
            continue
        if node.op_type == "Identity":  # the exporter's sharing: the same tensor under a new name
            tensor = TensorProto()
            tensor.CopyFrom(initializers[node.input[0]])
            tensor.name = node.output[0]
            results = [tensor]
        else:
            arrays = {name: numpy_helper.to_array(initializers[name]) for name in node.input if name}
            try:
                values = ReferenceEvaluator(node, opsets=opsets).run(None, arrays)
            except Exception:  # an operator the reference lacks: the node stays, runs in the graph
                kept.append(node)
                continue
            results = [
                numpy_helper.from_array(np.asarray(value), name)
                for name, value in zip(node.output, values, strict=False)
                if name
            ]
        for tensor in results:
            initializers[tensor.name] = tensor
            graph.initializer.append(tensor)
        folded.append(node)
    if folded:
        del graph.node[:]
        graph.node.extend(kept)
        used = _referenced(graph) | outputs
        unused = [t for t in graph.initializer if t.name not in used]
        for tensor in unused:
            graph.initializer.remove(tensor)
        names = {t.name for t in unused}
        for value in [i for i in graph.input if i.name in names]:
            graph.input.remove(value)
    return len(folded)


def _foldable(node, initializers: dict, outputs: set, sizes: dict) -> bool:
    if (
        node.domain not in ("", "ai.onnx")
        or node.op_type in _RANDOM
        or any(o in outputs for o in node.output)
    ):
        return False
    if any(a.HasField("g") or a.graphs or a.HasField("sparse_tensor") for a in node.attribute):
        return False
    if not all(name in initializers for name in node.input if name):
        return False
    if node.op_type in ("Constant", "Identity"):  # a tensor the file already holds
        return True
    if not node.input:
        return False
    held = sum(_elements(initializers[name].dims) for name in node.input if name)
    made = [sizes.get(name) for name in node.output if name]
    return all(n is not None for n in made) and sum(made) <= held + _FOLD_GROWTH


def _elements(dims) -> int:
    count = 1
    for d in dims:
        count *= d
    return count


def _inferred_sizes(model) -> dict:
    """Element counts of the values whose shapes ONNX's shape inference settles."""
    from onnx import shape_inference

    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # a graph shape inference cannot follow: only Constant/Identity fold
        return {}
    sizes = {}
    for value in inferred.graph.value_info:
        tensor = value.type.tensor_type
        known = value.type.HasField("tensor_type") and tensor.HasField("shape")
        if known and all(d.HasField("dim_value") for d in tensor.shape.dim):
            sizes[value.name] = _elements(d.dim_value for d in tensor.shape.dim)
    return sizes


def _referenced(graph) -> set:
    """Every value name a node of ``graph`` or of its subgraphs reads."""
    names = set()
    for node in graph.node:
        names.update(node.input)
        for attribute in node.attribute:
            for sub in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                names |= _referenced(sub)
    return names


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _unconvertible(model) -> bool:
    """Whether a node of the main graph has no onnx2torch converter at the model's opset."""
    from onnx2torch.node_converters import get_converter

    opset = _opset(model)
    for node in model.graph.node:
        try:
            get_converter(operation_type=node.op_type, version=opset, domain=node.domain)
        except NotImplementedError:
            return True
    return False


def _drop_idle_allowzero(model) -> None:
    from onnx import numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        allowzero = [a for a in node.attribute if a.name == "allowzero"]
        if allowzero and allowzero[0].i and 0 not in numpy_helper.to_array(initializers[node.input[1]]):
            node.attribute.remove(allowzero[0])


__all__ = [
    "ChannelsLast",
    "channels_last",
    "convert_onnx",
    "fold_constants",
    "prepare_graph",
    "strip_final_activation",
]
