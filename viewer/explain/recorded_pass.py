"""One recorded forward pass that serves every CAM-family and gradient-family map.

The pass records the target layer's activations ``A`` and, when asked, the path back to the input.
From it:

- ``activation_grads(c)`` is dy_c/dA. ``torch.autograd.grad`` only runs the graph between the
  logits and ``A``, so this backward stops at the target layer, and it is repeated per label
  over the same forward. When no input gradient is wanted, the layers before the target layer
  record no graph at all, so the pass costs little more than inference.
- ``input_grads(c, rule)`` is dy_c/dx under the plain, guided or DeconvNet ReLU rule
  (see ``relu_rules``), again over the same forward.

``A`` is cloned inside the forward hook, and the rest of the network runs on the clone. An
in-place operation after the layer, such as torchvision DenseNet's ``F.relu(..., inplace=True)``
after ``features.norm5``, therefore cannot overwrite the activations we read. Hooks are removed
and the model is left untouched, whatever happens.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from viewer.explain.relu_rules import ReLURules, Rule, routed_relus
from viewer.inference.feature_grid import NCHW, FeatureGrid


@dataclass
class RecordedPass:
    logits: torch.Tensor  # (B, labels), attached to the graph
    _activations: torch.Tensor | None  # (B, K, u, v), a detached copy; None without a layer
    _layer_output: torch.Tensor | None
    _inputs: torch.Tensor
    _rules: ReLURules | None
    _grid: FeatureGrid = NCHW

    @property
    def activations(self) -> torch.Tensor:
        if self._activations is None:
            raise RuntimeError("this pass was recorded without a target layer")
        return self._activations

    @property
    def layer_output(self) -> torch.Tensor:
        """The target layer's output in its own layout (tokens, channels last), detached."""
        if self._layer_output is None:
            raise RuntimeError("this pass was recorded without a target layer")
        return self._layer_output.detach()

    def activation_grads(self, target: int) -> torch.Tensor:
        """dy_target/dA for every sample, ``(B, K, u, v)`` (on the layer's grid, as ``activations``)."""
        if self._layer_output is None:
            raise RuntimeError("this pass was recorded without a target layer")
        if self._rules is not None:
            self._rules.set("gradient")
        with _grad_mode():
            (grad,) = torch.autograd.grad(self.logits[:, target].sum(), self._layer_output, retain_graph=True)
        return self._grid.to_nchw(grad)

    def input_grads(self, target: int, rule: Rule = "gradient") -> torch.Tensor:
        """dy_target/dx under ``rule``, ``(B, C, H, W)``. Needs ``record(..., input_grads=True)``."""
        if not self._inputs.requires_grad:
            raise RuntimeError("this pass was recorded without input gradients")
        if rule != "gradient" and self._rules is None:
            raise RuntimeError("this pass was recorded without ReLU rules")
        if self._rules is not None:
            self._rules.set(rule)
        # Samples are independent in eval mode, so the gradient of the sum is per-sample.
        with _grad_mode():
            (grad,) = torch.autograd.grad(self.logits[:, target].sum(), self._inputs, retain_graph=True)
        return grad


def _grad_mode():
    """Gradients on, inference mode off: callers (a GUI worker, a notebook) may hold either."""
    stack = ExitStack()
    stack.enter_context(torch.inference_mode(False))
    stack.enter_context(torch.enable_grad())
    return stack


@contextmanager
def record(
    network: nn.Module,
    inputs: torch.Tensor,
    layer: str | None,
    *,
    input_grads: bool = False,
    grid: FeatureGrid = NCHW,
) -> Iterator[RecordedPass]:
    """Run ``network`` on ``inputs`` once and keep what the maps need, for the ``with`` block.
    ``grid`` reads the layer's output as ``(B, K, u, v)`` (patch tokens, channels last); without
    a ``layer`` only input gradients are recorded."""
    input_grads = input_grads or layer is None  # nothing else to record without a layer
    module = network.get_submodule(layer) if layer is not None else None
    seen: dict[str, torch.Tensor] = {}

    def keep(_module, _args, output):
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"target layer {layer!r} returns {type(output).__name__}, not a tensor")
        if input_grads:
            node = output
        else:
            # Up to here the forward ran without recording a graph; record from here on only.
            node = output.detach().requires_grad_(True)
            torch.set_grad_enabled(True)
        seen["node"] = node
        return node.clone()  # downstream (in-place) ops act on the clone, not on ``node``

    with torch.inference_mode(False):  # a normal tensor even if ``inputs`` came from inference mode
        x = inputs.detach().clone().requires_grad_(input_grads)
    with ExitStack() as stack:
        if module is not None:
            handle = module.register_forward_hook(keep)
            stack.callback(handle.remove)
        rules = stack.enter_context(routed_relus()) if input_grads else None
        # Inference mode off, so this also works when the caller holds it. Without input gradients,
        # the layers before the target run under no_grad (the hook turns recording on).
        with torch.inference_mode(False), torch.set_grad_enabled(input_grads):
            logits = network(x)
        if module is not None and "node" not in seen:
            raise RuntimeError(f"target layer {layer!r} did not run in the forward pass")
        stack.close()  # hooks off before anyone else touches the model
        node = seen.get("node")
        activations = grid.to_nchw(node.detach()).clone() if node is not None else None
        yield RecordedPass(logits, activations, node, x, rules, grid)
