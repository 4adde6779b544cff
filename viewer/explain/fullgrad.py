"""FullGrad (Srinivas & Fleuret, NeurIPS 2019): the input-gradient term and every convolution's and
batch norm's bias-gradient term, each made absolute, rescaled to [0, 1], upsampled and summed.

The bias of a convolution is its own; that of a batch norm in eval mode is what it adds after
scaling, ``beta - mean * gamma / sqrt(var + eps)``. The gradient of the logit at each such layer's
output comes from one forward and one backward per label, the layers found by rerouting
``conv`` and ``batch_norm`` calls through a ``TorchFunctionMode`` (functional calls count; no
module is hooked). Two post-processings, the one to record with a map:

- ``"paper"`` (default), as the authors' code: each term rescaled over all its channels at once,
  then summed over channels, upsampled bilinearly (corners aligned).
- ``"pytorch-grad-cam"``: each channel rescaled on its own, upsampled, then summed; the whole
  sum rescaled at the end.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from viewer.explain.context import ExplainContext
from viewer.explain.registry import Method, register
from viewer.explain.traced_calls import batch_norm_affine

_CONV = {F.conv2d, torch.conv2d}


class _BiasLayers(TorchFunctionMode):
    """Records each 2-D convolution with a bias and each eval-mode batch norm: output and bias."""

    def __init__(self):
        super().__init__()
        self.outputs: list[torch.Tensor] = []
        self.biases: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        bias = None
        if func in _CONV:
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
        elif func is F.batch_norm and (affine := batch_norm_affine(args, kwargs)) is not None:
            bias = affine[1]
        if bias is None or out.dim() != 4:
            return out
        self.outputs.append(out)
        self.biases.append(bias.detach())
        return out.clone()  # later in-place ops (ReLU) change the clone, not the recorded output


def full_gradient_terms(network, inputs: torch.Tensor, targets: list[int]) -> list[list[torch.Tensor]]:
    """Per target, the input-gradient term ``x * df/dx`` and each bias layer's ``b * df/dz``
    (one forward): for a network of ReLUs and max pools they add up to the logit (the paper's
    completeness)."""
    out = []
    with torch.inference_mode(False), torch.enable_grad():
        x = inputs.detach().clone().requires_grad_(True)
        layers = _BiasLayers()
        with layers:
            logits = network(x)
        for i, target in enumerate(targets):
            grads = torch.autograd.grad(
                logits[:, target].sum(), [x, *layers.outputs], retain_graph=i + 1 < len(targets)
            )
            biases = [g * b.view(1, -1, 1, 1) for g, b in zip(grads[1:], layers.biases, strict=True)]
            out.append([(grads[0] * x).detach(), *(t.detach() for t in biases)])
    return out


def _rescale(t: torch.Tensor, dims: tuple[int, ...], eps: float) -> torch.Tensor:
    t = t - t.amin(dim=dims, keepdim=True)
    return t / (t.amax(dim=dims, keepdim=True) + eps)


@register
class FullGrad(Method):
    id = "fullgrad"
    seconds = 0.7
    title = "FullGrad"
    family = "gradient"
    cost = "own-pass"
    convention = "unit"
    reroutes_layers = True
    cnn_only = True  # a transformer's only convolution is its patch embedding: input x gradient
    reference = "Srinivas & Fleuret, NeurIPS 2019 (the authors' post-processing)"

    @classmethod
    def defaults(cls) -> dict:
        return {"variant": "paper"}

    def __init__(self, **params):
        super().__init__(**params)
        if self.params["variant"] not in ("paper", "pytorch-grad-cam"):
            raise ValueError("fullgrad: variant is 'paper' or 'pytorch-grad-cam'")

    def compute(self, ctx: ExplainContext, targets: list[int]) -> torch.Tensor:
        maps = []
        size = ctx.inputs.shape[-2:]
        for a, b in ctx.batches(len(ctx.inputs), kind="gradient"):
            per_target = full_gradient_terms(ctx.network, ctx.inputs[a:b], targets)
            maps.append(torch.stack([self._combine(terms, size) for terms in per_target]))
        return torch.cat(maps, dim=1)

    def _combine(self, terms: list[torch.Tensor], size) -> torch.Tensor:
        paper = self.params["variant"] == "paper"
        # The paper rescales a term over all its channels at once, pytorch-grad-cam each channel.
        dims, eps = ((1, 2, 3), 1e-6) if paper else ((2, 3), 1e-7)
        total = 0
        for t in terms:
            scaled = _rescale(t.abs(), dims, eps)
            if scaled.shape[-2:] != size:
                scaled = F.interpolate(scaled, size=size, mode="bilinear", align_corners=paper)
            total = total + scaled.sum(dim=1)
        return total if paper else _rescale(total, (1, 2), 1e-7)
