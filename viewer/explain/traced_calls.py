"""What the methods that reroute a forward's calls (``lrp_rules``, ``deeplift``, ``fullgrad``) read
from a call as a ``TorchFunctionMode`` sees it: positional or keyword, as the caller wrote it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_BATCH_NORM = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")

# In-place calls computed out of place: a tensor autograd saved is never overwritten.
OUT_OF_PLACE = {
    torch.relu_: torch.relu, torch.Tensor.relu_: torch.Tensor.relu, F.relu_: F.relu, F.hardtanh_: F.hardtanh,
    torch.Tensor.__imul__: torch.mul, torch.Tensor.mul_: torch.mul, torch.Tensor.__itruediv__: torch.div,
    torch.Tensor.div_: torch.div,
}  # fmt: skip


def without_inplace(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k != "inplace"}


def batch_norm_affine(args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(scale, shift)`` of an eval-mode ``F.batch_norm`` call, ``y = scale * x + shift`` per
    channel; None in training mode or without running statistics (it is not affine then)."""
    bound = dict(zip(_BATCH_NORM, args, strict=False)) | kwargs
    mean, var = bound.get("running_mean"), bound.get("running_var")
    if bound.get("training", False) or mean is None or var is None:
        return None
    gamma, beta = bound.get("weight"), bound.get("bias")
    scale = (torch.ones_like(var) if gamma is None else gamma) / torch.sqrt(var + bound.get("eps", 1e-5))
    shift = (torch.zeros_like(mean) if beta is None else beta) - mean * scale
    return scale, shift


def vjp(fn, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``(d fn(x) / dx)^T grad``: the true gradient a rule starts from or falls back to, computed
    on a detached copy inside a backward (where gradients are otherwise off)."""
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        (out,) = torch.autograd.grad(fn(leaf), leaf, grad_outputs=grad)
    return out
