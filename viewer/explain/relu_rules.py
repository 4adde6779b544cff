"""Switchable backward rules for every ReLU-like call a forward pass executes.

Guided Backpropagation and DeconvNet change only what flows back through ReLUs. Hooking
``nn.ReLU`` modules (as Captum and pytorch-grad-cam do) misses functional calls, such as the
``F.relu(features, inplace=True)`` in torchvision's DenseNet, and in-place modules hand hooks
tensors that are later overwritten. Instead, a ``TorchFunctionMode`` reroutes each executed
ReLU-like call, whatever its origin, through one autograd function whose backward rule is read
at backward time. One recorded forward pass can therefore serve the plain gradient, Guided
Backprop and DeconvNet in turn.

ReLU-like here means ``relu`` (functional, method, module, in-place or not, or the ATen
operator an exported program calls), ``relu6`` and ``hardtanh`` with a lower bound of 0 (ReLU6
in MobileNetV2). In-place calls are computed out of place: the forward values are the same, and
no saved tensor can be overwritten (an exported graph reads an in-place call's result from its
node, never from the tensor it overwrote, so that holds there too). Every other
non-linearity (SiLU, Hardswish, GELU, sigmoid gates, leaky ReLU) keeps its true gradient under
every rule, which is also what the peer libraries do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

Rule = Literal["gradient", "guided", "deconvnet"]


class _State:
    rule: Rule = "gradient"
    calls: int = 0


class _ReLULike(torch.autograd.Function):
    """``y = clamp(x, 0, upper)`` whose backward obeys the current rule."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, upper: float | None, state: _State) -> torch.Tensor:
        y = x.clamp(min=0) if upper is None else x.clamp(0, upper)
        # Save the forward mask, not ``x``: nothing done to ``x`` later can corrupt the backward.
        inside = x > 0 if upper is None else (x > 0) & (x < upper)
        ctx.save_for_backward(inside)
        ctx.state = state
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inside,) = ctx.saved_tensors
        rule = ctx.state.rule
        if rule == "gradient":
            out = grad * inside
        elif rule == "guided":
            out = grad.clamp(min=0) * inside
        else:  # deconvnet: the returning signal is rectified, the forward sign is ignored
            out = grad.clamp(min=0)
        return out, None, None


class _RouteReLUs(TorchFunctionMode):
    def __init__(self, state: _State):
        super().__init__()
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        upper = _relu_upper_bound(func, args, kwargs)
        if upper is False:
            return func(*args, **kwargs)
        x = args[0]
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            return func(*args, **kwargs)
        self.state.calls += 1
        return _ReLULike.apply(x, upper, self.state)


_ATEN = torch.ops.aten
# A torch.export program (viewer/inference/exported_program.py) calls ATen overloads directly.
_RELU = {
    F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_, F.relu_,
    _ATEN.relu.default, _ATEN.relu_.default,
}  # fmt: skip
_HARDTANH = {F.hardtanh, F.hardtanh_, _ATEN.hardtanh.default, _ATEN.hardtanh_.default}
_RELU6 = {F.relu6, _ATEN.relu6.default}


def _relu_upper_bound(func, args, kwargs) -> float | bool | None:
    """None for a plain ReLU, the upper bound for ReLU6-like clamps, False for anything else."""
    if func in _RELU:
        return None
    if func in _RELU6:
        return 6.0
    if func in _HARDTANH:
        low = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
        high = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
        return float(high) if low == 0 else False
    return False


class ReLURules:
    """Handle to a recorded forward: ``set(rule)`` before each backward."""

    def __init__(self, state: _State):
        self._state = state

    def set(self, rule: Rule) -> None:
        if rule not in ("gradient", "guided", "deconvnet"):
            raise ValueError(f"unknown backward rule {rule!r}")
        self._state.rule = rule

    @property
    def relu_calls(self) -> int:
        """How many ReLU-like calls the forward executed (and the rules govern)."""
        return self._state.calls


@contextmanager
def routed_relus() -> Iterator[ReLURules]:
    """Within this block, forward passes record ReLU-like calls under switchable rules.

    The rule is read during backward, so it may be changed after the block has exited.
    """
    state = _State()
    with _RouteReLUs(state):
        yield ReLURules(state)
