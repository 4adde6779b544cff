"""The gradient family: maps on the model-input grid from (modified) input gradients.

Gradient, Guided Backprop, DeconvNet and Guided Grad-CAM all read the one recorded forward pass
that also serves the CAM maps; they differ only in the ReLU backward rule (``relu_rules``).
Integrated Gradients and SmoothGrad need gradients at other inputs and run their own batched
passes. Channels are reduced as each paper displays them: the largest magnitude over channels
for sensitivity maps, the channel sum for Integrated Gradients (whose values add up to the
change of the logit).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from viewer.explain.cam import GradCAM
from viewer.explain.context import ExplainContext
from viewer.explain.registry import Method, register


def channel_max_abs(grads: torch.Tensor) -> torch.Tensor:
    """``(B, C, *grid)`` -> ``(B, *grid)``: the largest magnitude over channels."""
    return grads.abs().amax(dim=1)


class _RuleGradient(Method):
    family = "gradient"
    convention = "absolute"
    needs_input_grads = True
    volumetric = True
    rule = "gradient"

    def compute(self, ctx: ExplainContext, targets: list[int]) -> torch.Tensor:
        maps = []
        for i, target in enumerate(targets):
            maps.append(channel_max_abs(ctx.input_grads(target, self.rule)))
            ctx.report((i + 1) / len(targets))
        return torch.stack(maps)


@register
class Gradient(_RuleGradient):
    id = "gradient"
    title = "Gradient"
    reference = "Simonyan et al., ICLR-W 2014 (max |dy/dx| over channels)"


@register
class GuidedBackprop(_RuleGradient):
    id = "guided-backprop"
    default = True
    caveat = (
        "not class-specific: shows input structure whatever the label, and barely "
        "changes when the network is randomised (Adebayo et al. 2018)"
    )
    title = "Guided Backprop"
    reference = "Springenberg et al., ICLR-W 2015"
    needs_relu_rules = True
    rule = "guided"
    # Nearly the same for every label and for a randomised network (Adebayo et al. 2018): it shows
    # input structure, so the engine adds a note to each of its maps.
    class_sensitive = False


@register
class DeconvNet(_RuleGradient):
    id = "deconvnet"
    default = True
    caveat = "not class-specific: shows input structure whatever the label"
    title = "DeconvNet"
    reference = "Zeiler & Fergus, ECCV 2014 (backward ReLU on the returning signal only)"
    needs_relu_rules = True
    rule = "deconvnet"
    class_sensitive = False


@register
class GuidedGradCAM(Method):
    """Guided Backprop times Grad-CAM upsampled (bilinear) to the input, per channel; the map is the
    largest magnitude over channels. Class-sensitive only through its Grad-CAM factor."""

    id = "guided-gradcam"
    default = True
    caveat = "class-specific only through its Grad-CAM factor"
    title = "Guided Grad-CAM"
    family = "gradient"
    needs_layer = True
    convention = "absolute"
    reference = "Selvaraju et al., ICCV 2017"
    needs_input_grads = True
    needs_relu_rules = True
    volumetric = True

    def compute(self, ctx: ExplainContext, targets: list[int]) -> torch.Tensor:
        with ctx.part(0, 2):
            cams = GradCAM().compute(ctx, targets).clamp(min=0)  # cached gradients: no extra pass
        size = ctx.inputs.shape[2:]
        mode = "trilinear" if len(size) == 3 else "bilinear"
        maps = []
        with ctx.part(1, 2):
            for i, target in enumerate(targets):
                cam = F.interpolate(cams[i][:, None], size=size, mode=mode, align_corners=False)
                maps.append(channel_max_abs(ctx.input_grads(target, "guided") * cam))
                ctx.report((i + 1) / len(targets))
        return torch.stack(maps)


def baseline_input(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The reference input x'. "blur": the image blurred with a Gaussian of sigma = 1/32 of its
    width (removes lesions, keeps anatomy: a black baseline on a radiograph means air, so black
    regions such as a pneumothorax would get no attribution). "zeros": zeros in normalised units (the
    training mean, Captum's default). "min": each channel's minimum (black)."""
    if kind == "zeros":
        return torch.zeros_like(x)
    if kind == "min":
        return x.amin(dim=tuple(range(2, x.ndim)), keepdim=True).expand_as(x).clone()
    if kind == "blur":
        return gaussian_blur(x, sigma=x.shape[-1] / 32)
    raise ValueError(f"unknown baseline {kind!r} (blur, zeros or min)")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` or ``(B, C, D, H, W)`` with reflected borders."""
    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c, dims = x.shape[1], x.ndim - 2
    pad = min(radius, *(n - 1 for n in x.shape[2:]))
    out = F.pad(x, (pad,) * (2 * dims), mode="reflect")
    if pad < radius:  # tiny images: pad the remainder with edge values
        out = F.pad(out, (radius - pad,) * (2 * dims), mode="replicate")
    conv = F.conv3d if dims == 3 else F.conv2d
    for axis in range(dims):
        shape = [1] * dims
        shape[axis] = -1
        out = conv(out, k.view(1, 1, *shape).repeat(c, *[1] * (dims + 1)), groups=c)
    return out


def input_grads_at(ctx: ExplainContext, points: torch.Tensor, targets: list[int]) -> torch.Tensor:
    """dy_t/dx at each of ``points`` ``(N, C, *grid)`` for every target: ``(T, N, C, *grid)``."""
    with torch.inference_mode(False):
        out = torch.empty((len(targets), *points.shape), dtype=torch.float32)
    for start, stop in ctx.batches(len(points), kind="gradient"):
        with torch.inference_mode(False), torch.enable_grad():  # also when called in inference mode
            x = points[start:stop].detach().clone().requires_grad_(True)
            logits = ctx.network(x)
            for i, target in enumerate(targets):
                (grad,) = torch.autograd.grad(logits[:, target].sum(), x, retain_graph=i + 1 < len(targets))
                out[i, start:stop] = grad.float()
    return out


@register
class IntegratedGradients(Method):
    id = "integrated-gradients"
    seconds = 3.4
    quick: ClassVar[dict] = {"steps": 4}
    report: ClassVar[dict] = {}
    cost = "sampled"
    title = "Integrated Gradients"
    family = "gradient"
    volumetric = True
    convention = "signed"
    reference = "Sundararajan et al., ICML 2017 (Gauss-Legendre, as Captum)"

    @classmethod
    def defaults(cls) -> dict:
        return {"steps": 50, "baseline": "blur"}

    def compute(self, ctx: ExplainContext, targets: list[int]) -> torch.Tensor:
        nodes, weights = np.polynomial.legendre.leggauss(self.params["steps"])
        alphas = torch.tensor((nodes + 1) / 2, dtype=torch.float32)
        weights = torch.tensor(weights / 2, dtype=torch.float32)
        maps = []
        for b, x in enumerate(ctx.inputs.detach()):
            base = baseline_input(x[None], self.params["baseline"])[0]
            points = base + alphas.view(-1, *[1] * x.ndim) * (x - base)
            with ctx.part(b, len(ctx.inputs)):
                grads = input_grads_at(ctx, points, targets)
            integral = torch.einsum("n,tn...->t...", weights, grads)
            maps.append(((x - base) * integral).sum(dim=1))  # (T, *grid): channels summed
        return torch.stack(maps, dim=1)


@register
class SmoothGrad(Method):
    """Mean of the input gradient over noisy copies, then the largest magnitude over channels.
    ``noise`` is sigma as a fraction of the input's value range (the paper suggests 10-20 %)."""

    id = "smoothgrad"
    seeded = True
    seconds = 3.2
    quick: ClassVar[dict] = {"samples": 3}
    report: ClassVar[dict] = {"samples": 25}
    cost = "sampled"
    title = "SmoothGrad"
    family = "gradient"
    volumetric = True
    convention = "absolute"
    reference = "Smilkov et al., arXiv 1706.03825"

    @classmethod
    def defaults(cls) -> dict:
        return {"samples": 50, "noise": 0.15}

    def compute(self, ctx: ExplainContext, targets: list[int]) -> torch.Tensor:
        g = ctx.generator(salt=17)
        maps = []
        n = self.params["samples"]
        for b, x in enumerate(ctx.inputs.detach()):
            sigma = self.params["noise"] * float(x.max() - x.min())
            noise = torch.randn((n, *x.shape), generator=g).to(x.device, x.dtype) * sigma
            with ctx.part(b, len(ctx.inputs)):
                grads = input_grads_at(ctx, x + noise, targets)
            maps.append(channel_max_abs(grads.mean(dim=1)))
        return torch.stack(maps, dim=1)
