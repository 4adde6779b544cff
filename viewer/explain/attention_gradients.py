"""Class-specific attention maps of vision transformers, from gradients that reach every block's
attention probabilities (``attention_graph``):

- ``legrad`` (Bousselham et al., 2024): for each block l, the head's score of that block's own
  tokens, ``s_l = head(norm(z_l))``, differentiated with respect to the block's attention; the
  positive part averaged over heads and queries gives each key (patch) a weight; the maps of all
  blocks are averaged. ``pooling="mean"`` reads the tokens' mean instead of the model's own
  read-out (the class token on ViTs), as TorchCAM does on torchvision's ViT.
- ``transformer-attribution`` (Chefer, Gur & Wolf, ICCV 2021, the gradient-weighted rule of
  "Generic Attention-model Explainability"): per block, ``Ā = mean_h (dy/dA ⊙ A)^+``; relevance
  rolled out from ``R = I`` by ``R <- R + Ā R`` through the blocks in order; the map is the class
  token's row of ``R`` over the patches (for a network without one, the patches' mean row).

Both take one forward and one backward per label.
"""

from __future__ import annotations

import torch

from viewer.explain.attention_graph import differentiable_attention, readout
from viewer.explain.context import ExplainContext
from viewer.explain.registry import Method, register


class _AttentionGradient(Method):
    family = "attention"
    convention = "unit"
    needs_attention = True
    cost = "own-pass"

    def compute(self, ctx: ExplainContext, targets: list[int]) -> torch.Tensor:
        grid = ctx.grid
        if grid.layout != "tokens":
            raise ValueError(f"{self.title} needs a vision transformer (a target layer of patch tokens)")
        maps = []
        for a, b in ctx.batches(len(ctx.inputs), kind="gradient"):
            with torch.inference_mode(False), torch.enable_grad():
                x = ctx.inputs[a:b].detach().clone().requires_grad_(True)
                with differentiable_attention(ctx.network) as graph:
                    logits = ctx.network(x)
                if not graph.attentions:
                    raise ValueError(f"{self.title} found no self-attention blocks it can read")
                flows = self.flows(ctx, graph, logits, targets)  # (T, B, patches)
            maps.append(flows.detach().reshape(len(targets), b - a, grid.rows, grid.cols))
        return torch.cat(maps, dim=1)

    def flows(self, ctx, graph, logits, targets) -> torch.Tensor:
        raise NotImplementedError


@register
class LeGrad(_AttentionGradient):
    id = "legrad"
    title = "LeGrad"
    reference = "Bousselham et al., arXiv 2404.03214, 2024 (as TorchCAM)"

    @classmethod
    def defaults(cls) -> dict:
        return {"pooling": "model"}

    def flows(self, ctx, graph, logits, targets) -> torch.Tensor:
        head = readout(ctx.network, self.params["pooling"])
        if head is None:
            raise ValueError("LeGrad needs the transformer's own head (torchvision's or timm's ViT)")
        scores = [head(tokens) for tokens in graph.blocks]  # per block (B, labels)
        p = ctx.grid.prefix
        out = []
        for i, target in enumerate(targets):
            per_block = []
            for j, (score, attention) in enumerate(zip(scores, graph.attentions, strict=True)):
                # Each block's own score and attention only: not the later blocks' scores.
                last = i + 1 == len(targets) and j + 1 == len(scores)
                (grad,) = torch.autograd.grad(score[:, target].sum(), attention, retain_graph=not last)
                per_block.append(grad.clamp(min=0).mean(dim=(1, 2))[:, p:])  # (B, patches)
            out.append(torch.stack(per_block).mean(dim=0))
        return torch.stack(out)


@register
class TransformerAttribution(_AttentionGradient):
    id = "transformer-attribution"
    title = "Transformer attribution"
    reference = "Chefer, Gur & Wolf, ICCV 2021 (gradient-weighted attention rollout)"

    def flows(self, ctx, graph, logits, targets) -> torch.Tensor:
        p = ctx.grid.prefix
        out = []
        for i, target in enumerate(targets):
            grads = torch.autograd.grad(
                logits[:, target].sum(), graph.attentions, retain_graph=i + 1 < len(targets)
            )
            relevance = None
            for attention, grad in zip(graph.attentions, grads, strict=True):
                weighted = (grad * attention.detach()).clamp(min=0).mean(dim=1)  # (B, T, T)
                if relevance is None:
                    relevance = torch.eye(weighted.shape[-1], device=weighted.device).expand_as(weighted)
                relevance = relevance + weighted @ relevance
            out.append(relevance[:, 0, p:] if p else relevance[:, p:, p:].mean(dim=1))
        return torch.stack(out)
