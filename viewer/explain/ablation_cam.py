"""Ablation-CAM (Desai & Ramaswamy, WACV 2020): a channel's weight is the relative drop of the
target's score when that channel of the target layer is set to zero, w_k = (y_c - y_c^k) / y_c;
the map is sum_k w_k A^k. Gradient-free, so saturated outputs do not blank it.

Each ablation re-runs the network with the layer's recorded output, one channel zeroed, put in
place by a forward hook (batched over channels). pytorch-grad-cam does the same; on a layer with
negative activations it replaces the channel by its minimum minus 1e7 instead of zero, which this
class does not copy (the paper zeroes).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import ClassVar

import torch

from viewer.explain.cam import weighted_sum
from viewer.explain.context import ExplainContext
from viewer.explain.registry import Method, register


@register
class AblationCAM(Method):
    id = "ablation-cam"
    seconds = 18.0
    report: ClassVar[dict] = {}
    cost = "sampled"
    title = "Ablation-CAM"
    family = "cam"
    convention = "unit"
    reference = "Desai & Ramaswamy, WACV 2020"
    needs_layer = True

    def compute(self, ctx: ExplainContext, targets: list[int]) -> torch.Tensor:
        a = ctx.activations  # (B, K, u, v), read as a grid
        recorded = ctx.recorded().layer_output  # in the layer's own layout
        axis = 1 if ctx.grid.layout == "nchw" else -1
        b, k = a.shape[:2]
        scores = ctx.logits[:, targets].float()  # (B, T)
        weights = torch.empty(len(targets), b, k, dtype=a.dtype, device=a.device)
        module = ctx.network.get_submodule(ctx.layer)
        for sample in range(b):
            with ctx.part(sample, b), _replaced(module) as replace:
                x = ctx.inputs[sample : sample + 1].detach()

                def make_batch(start: int, stop: int, sample=sample, x=x) -> torch.Tensor:
                    out = recorded[sample : sample + 1].expand(stop - start, *recorded.shape[1:]).clone()
                    channels = torch.arange(start, stop, device=out.device)
                    index = torch.arange(stop - start, device=out.device)
                    if axis == 1:
                        out[index, channels] = 0
                    else:
                        out.movedim(-1, 1)[index, channels] = 0
                    replace.output = out
                    return x.expand(stop - start, *x.shape[1:])

                ablated = ctx.scores(make_batch, k, logits=True)[:, targets]  # (K, T)
            y = scores[sample]
            weights[:, sample] = ((y[None, :] - ablated) / y[None, :]).T.to(a.dtype)
        return torch.stack([weighted_sum(weights[t], a) for t in range(len(targets))])


class _Replacement:
    output: torch.Tensor | None = None


@contextmanager
def _replaced(module: torch.nn.Module):
    """While active, ``module``'s output is whatever ``.output`` of the yielded object holds."""
    replacement = _Replacement()
    handle = module.register_forward_hook(lambda _m, _i, _o: replacement.output)
    try:
        yield replacement
    finally:
        handle.remove()
