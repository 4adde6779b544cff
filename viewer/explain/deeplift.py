"""DeepLIFT with the rescale rule (Shrikumar et al., ICML 2017), as Captum's ``DeepLift`` computes it.

The input and its reference run as one batch ``[x; x']``. Backward, each non-linearity passes the
multiplier ``dy/dx`` replaced by the finite difference ``(f(x) - f(x')) / (x - x')`` (its true
gradient where the input barely moved), max pooling its own difference rule, and every linear
operation (convolutions, batch norm, sums) keeps its gradient; the attribution is
``(x - x') * multiplier``, which adds up to ``y(x) - y(x')`` (summation-to-delta).

Calls are rerouted by a ``TorchFunctionMode``, as ``relu_rules`` does, so functional and in-place
non-linearities count too and no module is hooked (Captum needs one module per use: torchvision's
ResNet reuses its ReLU, which Captum refuses).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from viewer.explain.context import ExplainContext
from viewer.explain.gradients import baseline_input
from viewer.explain.lrp_rules import check_same_forward
from viewer.explain.registry import Method, register
from viewer.explain.traced_calls import OUT_OF_PLACE, vjp, without_inplace

EPS = 1e-10  # Captum's: below this input change the true gradient is used

_ELEMENTWISE = {
    F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_, F.relu_, F.relu6, F.hardtanh,
    F.hardtanh_, F.elu, F.leaky_relu, torch.sigmoid, torch.Tensor.sigmoid, F.sigmoid, torch.tanh,
    torch.Tensor.tanh, F.softplus, F.silu, F.gelu, F.hardswish, F.hardsigmoid, F.mish,
}  # fmt: skip
_PLAIN = {
    torch.relu_: torch.relu,
    torch.Tensor.relu_: torch.Tensor.relu,
    F.relu_: F.relu,
    F.hardtanh_: F.hardtanh,
}


def _halves(t: torch.Tensor) -> torch.Tensor:
    """``t[:B] - t[B:]`` repeated for both halves: the change from the reference."""
    a, b = t.chunk(2)
    return torch.cat([a - b, a - b])


class _Rescale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, fn):
        y = fn(x)
        ctx.save_for_backward(x, y)
        ctx.fn = fn
        return y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        delta_in = _halves(x)
        return torch.where(delta_in.abs() < EPS, vjp(ctx.fn, x, grad), grad * _halves(y) / delta_in), None


class _MaxPool(torch.autograd.Function):
    """Each pooling window's output change, given to the positions of the input's and the
    reference's maxima (Captum's ``maxpool`` rule), divided by the input's change."""

    @staticmethod
    def forward(ctx, x, args: tuple):
        y, indices = F.max_pool2d(x, *args, return_indices=True)
        ctx.save_for_backward(x, y, indices)
        ctx.args = args
        return y

    @staticmethod
    def backward(ctx, grad):
        x, y, indices = ctx.saved_tensors
        out, ref = y.chunk(2)
        top = torch.max(out, ref)
        delta_out = torch.cat([top - ref, out - top])
        # Summed over every window a position wins (Captum's max_unpool2d keeps one of them where
        # windows overlap, as ResNet's 3 x 3 / 2 pool's do, and the attributions then no longer add
        # up to the output's change).
        spread = torch.zeros_like(x).flatten(2)
        spread.scatter_add_(2, indices.flatten(2), (grad * delta_out).flatten(2))
        spread = spread.view_as(x)
        a, b = spread.chunk(2)
        spread = torch.cat([a + b, a + b])
        true = vjp(lambda t: F.max_pool2d(t, *ctx.args), x, grad)
        delta_in = _halves(x)
        return torch.where(delta_in.abs() < EPS, true, spread / delta_in), None


class _RouteRescale(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        x = args[0] if args else kwargs.get("input")
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            return func(*args, **kwargs)
        if func in _ELEMENTWISE:
            plain = OUT_OF_PLACE.get(func, func)
            return _Rescale.apply(x, lambda t: plain(t, *args[1:], **without_inplace(kwargs)))
        if func is F.max_pool2d and not _wants_indices(args, kwargs):
            return _MaxPool.apply(x, _pool_args(args, kwargs))
        return func(*args, **kwargs)


def _wants_indices(args, kwargs) -> bool:
    return bool(args[6] if len(args) > 6 else kwargs.get("return_indices", False))


def _pool_args(args, kwargs) -> tuple:
    """``(kernel_size, stride, padding, dilation, ceil_mode)`` of a ``max_pool2d`` call."""
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
    values = {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False}
    values |= dict(zip(names, args[1:6], strict=False)) | {k: v for k, v in kwargs.items() if k in names}
    if not values["stride"]:  # None or [] (nn.MaxPool2d's default): the kernel's size
        values["stride"] = values["kernel_size"]
    return tuple(values[n] for n in names)


def deeplift(
    network: torch.nn.Module, x: torch.Tensor, base: torch.Tensor, targets: list[int]
) -> torch.Tensor:
    """Attributions ``(T, B, C, H, W)`` of each logit of ``targets`` relative to ``base``."""
    with torch.inference_mode(False), torch.enable_grad():
        both = torch.cat([x, base]).detach().requires_grad_(True)
        with _RouteRescale():
            logits = network(both)
        check_same_forward(network, torch.cat([x, base]), logits, "DeepLIFT")
        out = []
        for i, target in enumerate(targets):
            (grad,) = torch.autograd.grad(logits[:, target].sum(), both, retain_graph=i + 1 < len(targets))
            out.append((x - base) * grad[: len(x)])
    return torch.stack(out).detach()


@register
class DeepLift(Method):
    id = "deeplift"
    seconds = 0.3
    title = "DeepLIFT"
    family = "gradient"
    cost = "own-pass"
    convention = "signed"
    reroutes_layers = True
    reference = "Shrikumar et al., ICML 2017 (rescale rule, as Captum)"

    @classmethod
    def defaults(cls) -> dict:
        return {"baseline": "blur"}

    def compute(self, ctx: ExplainContext, targets: list[int]) -> torch.Tensor:
        maps = []
        for a, b in ctx.batches(len(ctx.inputs), kind="gradient"):
            x = ctx.inputs[a:b].detach()
            base = torch.cat([baseline_input(x[i : i + 1], self.params["baseline"]) for i in range(len(x))])
            maps.append(deeplift(ctx.network, x, base, targets).sum(dim=-3))
        return torch.cat(maps, dim=1)
