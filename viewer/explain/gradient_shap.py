"""GradientSHAP (expected gradients; Lundberg & Lee, NeurIPS 2017; Erion et al. 2021), as Captum's
``GradientShap`` computes it: each sample draws a reference from a distribution of baselines, a
point on the straight line from it to the (optionally noised) input at a uniform random fraction,
and multiplies the gradient there by the input's difference from that reference; the map is the
mean over samples, summed over channels. Its expectation is the mean of Integrated Gradients over
the baselines, so it adds up to the mean change of the logit from them.

The default references are the blurred image and zeros (the training mean in normalised units): a
black reference would mean air, which is a finding on a radiograph (see ``baseline_input``)."""

from __future__ import annotations

from typing import ClassVar

import torch

from viewer.explain.context import ExplainContext
from viewer.explain.gradients import baseline_input, input_grads_at
from viewer.explain.registry import Method, register


@register
class GradientShap(Method):
    id = "gradient-shap"
    seeded = True
    seconds = 1.4
    title = "GradientSHAP"
    family = "gradient"
    cost = "sampled"
    convention = "signed"
    volumetric = True
    reference = "Lundberg & Lee, NeurIPS 2017 (expected gradients, as Captum's GradientShap)"
    quick: ClassVar[dict] = {"samples": 4}
    report: ClassVar[dict] = {}

    @classmethod
    def defaults(cls) -> dict:
        return {"samples": 20, "baselines": "blur,zeros", "noise": 0.0}

    def compute(self, ctx: ExplainContext, targets: list[int]) -> torch.Tensor:
        kinds = [k.strip() for k in self.params["baselines"].split(",") if k.strip()]
        n = self.params["samples"]
        g = ctx.generator(salt=29)
        maps = []
        for b, x in enumerate(ctx.inputs.detach()):
            bases = torch.cat([baseline_input(x[None], kind) for kind in kinds])  # (K, C, H, W)
            chosen = bases[torch.randint(len(bases), (n,), generator=g).to(x.device)]
            alphas = torch.rand(n, generator=g).view(-1, *[1] * x.ndim).to(x.device, x.dtype)
            sigma = self.params["noise"] * float(x.max() - x.min())
            noise = torch.randn((n, *x.shape), generator=g).to(x.device, x.dtype) * sigma
            noisy = x + noise if sigma > 0 else x.expand(n, *x.shape)
            points = chosen + alphas * (noisy - chosen)
            with ctx.part(b, len(ctx.inputs)):
                grads = input_grads_at(ctx, points, targets)  # (T, N, C, H, W)
            maps.append((grads * (noisy - chosen)).mean(dim=1).sum(dim=1))  # (T, *grid): channels summed
        return torch.stack(maps, dim=1)
