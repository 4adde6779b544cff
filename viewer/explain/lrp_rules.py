"""Layer-wise Relevance Propagation as one backward pass, for any network written in PyTorch.

Relevance travels back as the "gradient": every operation a forward executes is rerouted, as
``relu_rules`` reroutes ReLUs, through an autograd function whose backward receives the relevance
of its output and returns that of its input. A ``TorchFunctionMode`` sees every call, whatever its
origin (a module, a functional call in ``forward``, an in-place ``+=``), so the rules need no
per-architecture canonizer and the model is never modified, copied or hooked:

- convolutions and dense layers: the composite's rule (epsilon, z+, alpha-beta, or flat for the
  first such layer executed);
- a batch norm whose input is a convolution's or dense layer's output is merged into it (the
  layer is re-run with the folded weights and bias), as Zennit's canonizers do per architecture;
  any other batch norm (DenseNet's after each concatenation), layer and group norms, activations,
  and products with constants pass relevance unchanged, as Zennit's ``Pass``;
- sums of two tensors (residual connections) and average pools split relevance in proportion to
  the contributions (Zennit's ``Norm``); a product of two tensors (a squeeze-excitation gate)
  gives all of it to the signal, none to the gate;
- everything else (max pooling, concatenation, reshapes, slicing) keeps its gradient, which
  moves relevance without changing it.

Stabilisers follow Zennit: ``z + eps * sign(z)`` with sign(0) = 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from viewer.explain.traced_calls import OUT_OF_PLACE, batch_norm_affine, vjp, without_inplace

STABILIZER = 1e-6


def stabilize(z: torch.Tensor, eps: float) -> torch.Tensor:
    return z + ((z == 0).to(z) + z.sign()) * eps


@dataclass(frozen=True)
class LayerRule:
    """The rule of a convolution or dense layer: ``"epsilon"``, ``"zplus"``, ``"alphabeta"`` or
    ``"flat"``."""

    name: str
    epsilon: float = STABILIZER
    alpha: float = 1.0
    beta: float = 0.0


@dataclass(frozen=True)
class Composite:
    """Which rule each layer gets: ``first`` for the first convolution or dense layer executed,
    ``conv`` for the other convolutions, ``dense`` for the dense layers; ``merge_batchnorm``
    folds a batch norm into the layer before it."""

    conv: LayerRule
    dense: LayerRule
    first: LayerRule | None = None
    merge_batchnorm: bool = True


def _vjp(op: Callable, x: torch.Tensor, weight: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """(d op(x, weight) / dx)^T s: the transposed layer applied to ``s``."""
    return vjp(lambda t: op(t, weight, None), x, s)


def layer_relevance(
    rule: LayerRule, op: Callable, x: torch.Tensor, weight: torch.Tensor, bias, relevance: torch.Tensor
) -> torch.Tensor:
    """The relevance of the input ``x`` of ``op(x, weight, bias)`` (a convolution or dense layer)
    given that of its output."""
    if rule.name == "flat":
        ones = torch.ones_like(weight)
        z = op(torch.ones_like(x), ones, None)
        return _vjp(op, torch.ones_like(x), ones, relevance / stabilize(z, rule.epsilon))
    if rule.name == "epsilon":
        z = op(x, weight, bias)
        return x * _vjp(op, x, weight, relevance / stabilize(z, rule.epsilon))
    x_pos, x_neg = x.clamp(min=0), x.clamp(max=0)
    w_pos, w_neg = weight.clamp(min=0), weight.clamp(max=0)
    b_pos = None if bias is None else bias.clamp(min=0)
    positive = op(x_pos, w_pos, b_pos) + op(x_neg, w_neg, None)
    s = relevance / stabilize(positive, rule.epsilon)
    out = x_pos * _vjp(op, x_pos, w_pos, s) + x_neg * _vjp(op, x_neg, w_neg, s)
    if rule.name == "zplus" or rule.beta == 0:
        return rule.alpha * out if rule.name == "alphabeta" else out
    if rule.name != "alphabeta":
        raise ValueError(f"unknown LRP rule {rule.name!r}")
    b_neg = None if bias is None else bias.clamp(max=0)
    negative = op(x_pos, w_neg, b_neg) + op(x_neg, w_pos, None)
    s = relevance / stabilize(negative, rule.epsilon)
    against = x_pos * _vjp(op, x_pos, w_neg, s) + x_neg * _vjp(op, x_neg, w_pos, s)
    return rule.alpha * out - rule.beta * against


class _Layer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, op, rule, trace):
        ctx.save_for_backward(x, weight, bias)
        ctx.op, ctx.rule, ctx.trace = op, rule, trace
        return op(x, weight, bias)

    @staticmethod
    def backward(ctx, relevance):
        x, weight, bias = ctx.saved_tensors
        out = layer_relevance(ctx.rule, ctx.op, x, weight, bias, relevance)
        if ctx.trace is not None:
            ctx.trace.append((weight, float(relevance.sum()), float(out.sum())))
        return out, None, None, None, None, None


class _Pass(torch.autograd.Function):
    """``fn(x)`` forward; relevance back unchanged (``fn`` keeps the shape)."""

    @staticmethod
    def forward(ctx, x, fn):
        return fn(x)

    @staticmethod
    def backward(ctx, relevance):
        return relevance, None


class _Norm(torch.autograd.Function):
    """``fn(x)`` forward (an average pool, a mean); relevance shared in proportion to the inputs."""

    @staticmethod
    def forward(ctx, x, fn):
        z = fn(x)
        ctx.save_for_backward(x, z)
        ctx.fn = fn
        return z

    @staticmethod
    def backward(ctx, relevance):
        x, z = ctx.saved_tensors
        return x * vjp(ctx.fn, x, relevance / stabilize(z, STABILIZER)), None


class _Sum(torch.autograd.Function):
    """``a + b`` (a residual connection): relevance shared in proportion to each term."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a + b

    @staticmethod
    def backward(ctx, relevance):
        a, b = ctx.saved_tensors
        s = relevance / stabilize(a + b, STABILIZER)
        return (a * s).sum_to_size(a.shape), (b * s).sum_to_size(b.shape)


class _Gate(torch.autograd.Function):
    """``signal * gate``: all relevance to the signal (the larger operand), none to the gate."""

    @staticmethod
    def forward(ctx, signal, gate):
        return signal * gate

    @staticmethod
    def backward(ctx, relevance):
        return relevance, None


_PASS = {
    F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_, F.relu_, F.relu6,
    F.hardtanh, F.hardtanh_, F.hardswish, F.silu, F.gelu, F.elu, F.leaky_relu, F.mish,
    torch.sigmoid, torch.Tensor.sigmoid, F.sigmoid, torch.tanh, torch.Tensor.tanh, F.hardsigmoid,
    F.layer_norm, F.group_norm, F.dropout, F.dropout2d,
}  # fmt: skip
_ADD = {
    torch.add,
    torch.Tensor.add,
    torch.Tensor.__add__,
    torch.Tensor.__radd__,
    torch.Tensor.__iadd__,
    torch.Tensor.add_,
}
_MUL = {
    torch.mul,
    torch.Tensor.mul,
    torch.Tensor.__mul__,
    torch.Tensor.__rmul__,
    torch.Tensor.__imul__,
    torch.Tensor.mul_,
}
_DIV = {torch.div, torch.Tensor.div, torch.Tensor.__truediv__, torch.Tensor.__itruediv__, torch.Tensor.div_}
_SCALE = _MUL | _DIV  # built once: the mode sees every call of the forward
_NORM = {F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
         F.adaptive_avg_pool3d, torch.mean, torch.Tensor.mean}  # fmt: skip


@dataclass
class _Layers:
    """The convolutions and dense layers seen so far in this forward (their outputs, by id, for a
    batch norm that follows)."""

    first_seen: bool = False
    outputs: dict[int, tuple] = field(default_factory=dict)
    calls: int = 0


class _RouteRelevance(TorchFunctionMode):
    def __init__(self, composite: Composite, trace: list | None = None):
        super().__init__()
        self.composite = composite
        self.layers = _Layers()
        self.trace = trace

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (F.conv1d, F.conv2d, F.conv3d, torch.conv2d, torch.conv1d, torch.conv3d, F.linear):
            return self._layer(func, args, kwargs)
        if func is F.batch_norm:
            return self._batch_norm(func, args, kwargs)
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            return func(*args, **kwargs)
        if func in _PASS:
            plain = OUT_OF_PLACE.get(func, func)
            return _Pass.apply(x, lambda t: plain(t, *args[1:], **without_inplace(kwargs)))
        if func in _NORM:
            return _Norm.apply(x, lambda t: func(t, *args[1:], **kwargs))
        other = args[1] if len(args) > 1 else None
        if func in _ADD and isinstance(other, torch.Tensor) and not kwargs:
            return _Sum.apply(x, other)
        if func in _SCALE:
            plain = OUT_OF_PLACE.get(func, func)
            if isinstance(other, torch.Tensor) and other.requires_grad and x.requires_grad and func in _MUL:
                signal, gate = (x, other) if x.numel() >= other.numel() else (other, x)
                return _Gate.apply(signal, gate)
            if x.requires_grad:  # scaled by a constant: relevance kept
                return _Pass.apply(x, lambda t: plain(t, *args[1:], **kwargs))
            if isinstance(other, torch.Tensor) and other.requires_grad and func in _MUL:
                return _Pass.apply(other, lambda t: plain(x, t, **kwargs))
        return func(*args, **kwargs)

    def _layer(self, func, args, kwargs):
        x, weight = args[0], args[1] if len(args) > 1 else kwargs["weight"]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        rest = dict(kwargs)
        rest.pop("weight", None), rest.pop("bias", None)
        extra = args[3:]

        def op(t, w, b, func=func, extra=extra, rest=rest):
            return func(t, w, b, *extra, **rest)

        first = not self.layers.first_seen
        self.layers.first_seen = True
        self.layers.calls += 1
        composite = self.composite
        dense = func is F.linear
        rule = (
            composite.first
            if first and composite.first is not None
            else composite.dense
            if dense
            else composite.conv
        )
        out = _Layer.apply(x, weight, bias, op, rule, self.trace)
        self.layers.outputs[id(out)] = (out, x, weight, bias, op, rule)
        return out

    def _batch_norm(self, func, args, kwargs):
        x = args[0] if args else kwargs["input"]
        layer = self.layers.outputs.get(id(x))
        affine = batch_norm_affine(args, kwargs)
        if self.composite.merge_batchnorm and affine is not None and layer is not None and layer[0] is x:
            _, inputs, weight, bias, op, rule = layer
            scale, shift = affine
            fused_w = weight * scale.view((-1,) + (1,) * (weight.dim() - 1))
            fused_b = shift if bias is None else bias * scale + shift
            return _Layer.apply(inputs, fused_w, fused_b, op, rule, self.trace)
        return _Pass.apply(x, lambda t: func(t, *args[1:], **kwargs))


def relevance(
    network: torch.nn.Module,
    inputs: torch.Tensor,
    targets: list[int],
    composite: Composite,
    trace: list | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Input relevance ``(T, B, C, H, W)`` of each logit of ``targets`` (started at the logit's
    value) from one forward, the logits, and how many convolutions and dense layers the rules
    governed. ``trace`` collects ``(weight, relevance out, relevance in)`` of every layer as the
    backward passes it (a conservation check)."""
    mode = _RouteRelevance(composite, trace)
    with torch.inference_mode(False), torch.enable_grad():
        x = inputs.detach().clone().requires_grad_(True)
        with mode:
            logits = network(x)
        check_same_forward(network, inputs, logits, "LRP")
        out = []
        for i, target in enumerate(targets):
            start = torch.zeros_like(logits)
            start[:, target] = logits[:, target].detach()
            (r,) = torch.autograd.grad(logits, x, grad_outputs=start, retain_graph=i + 1 < len(targets))
            out.append(r.detach())
    return torch.stack(out), logits.detach(), mode.layers.calls


def check_same_forward(
    network: torch.nn.Module, inputs: torch.Tensor, rerouted: torch.Tensor, what: str
) -> None:
    """Raise if the rerouted forward's logits are not the network's own: a statement that changes
    a tensor in place and discards the result (``x.add_(y)``) is computed out of place here, and
    the map would explain another function."""
    with torch.inference_mode():
        plain = network(inputs)
    scale = float(plain.abs().max()) or 1.0
    if not torch.allclose(rerouted.detach(), plain, rtol=1e-3, atol=1e-4 * scale):
        raise RuntimeError(
            f"{what}: this network's forward changes tensors in place in a way the rules cannot "
            "follow (its outputs differ when rerouted); use a gradient or perturbation method"
        )


__all__ = [
    "STABILIZER",
    "Composite",
    "LayerRule",
    "check_same_forward",
    "layer_relevance",
    "relevance",
    "stabilize",
]
