"""Attention rollout (Abnar & Zuidema, ACL 2020): how much each patch token flows into the class
token through every block's attention, residual connections included.

Per block, the attention of all heads is averaged, A_l = mean_h softmax(q_h k_h^T / sqrt(d)),
the residual is added and rows renormalised, Ã_l = (A_l + I) / 2, and the blocks are chained:
R = Ã_L ... Ã_1. The map is the class token's row of R over the patch tokens (for a network
without a class token, the mean row of the patch tokens). With ``discard`` > 0 the weakest
attention entries of each block are zeroed first (the class token's own kept), as jacobgil's
vit-explain does. Class-agnostic: the same map for every label.

Attention is recomputed from each block's own query and key projections, read by hooks during
one forward pass (the blocks use fused attention kernels that return no weights): torchvision's
``nn.MultiheadAttention`` from its inputs and ``in_proj``; timm's ``Attention`` from its ``qkv``
output with its ``q_norm``/``k_norm`` and ``scale``.
"""

from __future__ import annotations

import math
from contextlib import ExitStack

import torch
import torch.nn.functional as F
from torch import nn

from viewer.explain.context import ExplainContext
from viewer.explain.registry import Method, register
from viewer.inference.feature_grid import attention_blocks


def _mha_attention(module: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    if not module.batch_first:
        query, key = query.transpose(0, 1), key.transpose(0, 1)
    e, h = module.embed_dim, module.num_heads
    if module._qkv_same_embed_dim:
        wq, wk = module.in_proj_weight[:e], module.in_proj_weight[e : 2 * e]
    else:
        wq, wk = module.q_proj_weight, module.k_proj_weight
    bq, bk = (
        (module.in_proj_bias[:e], module.in_proj_bias[e : 2 * e])
        if module.in_proj_bias is not None
        else (None, None)
    )
    q, k = F.linear(query, wq, bq), F.linear(key, wk, bk)
    b, n, _ = q.shape
    q = q.reshape(b, n, h, e // h).transpose(1, 2)
    k = k.reshape(b, k.shape[1], h, e // h).transpose(1, 2)
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(e // h), dim=-1)


def _timm_attention(module: nn.Module, qkv: torch.Tensor) -> torch.Tensor:
    b, n, _ = qkv.shape
    q, k, _ = qkv.reshape(b, n, 3, module.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = module.q_norm(q), module.k_norm(k)
    return torch.softmax((q * module.scale) @ k.transpose(-2, -1), dim=-1)


def record_attention(network: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    """Every block's attention ``(B, heads, T, T)``, in execution order, from one forward pass."""
    seen: list[torch.Tensor] = []
    with ExitStack() as stack:
        for module in attention_blocks(network):
            if isinstance(module, nn.MultiheadAttention):

                def pre(m, args, kwargs):
                    query = kwargs.get("query", args[0] if args else None)
                    key = kwargs.get("key", args[1] if len(args) > 1 else query)
                    seen.append(_mha_attention(m, query, key))

                handle = module.register_forward_pre_hook(pre, with_kwargs=True)
            else:
                handle = module.qkv.register_forward_hook(
                    lambda _l, _i, out, m=module: seen.append(_timm_attention(m, out))
                )
            stack.callback(handle.remove)
        with torch.inference_mode():
            network(inputs)
    return seen


def rollout(attentions: list[torch.Tensor], discard: float = 0.0) -> torch.Tensor:
    """R = Ã_L ... Ã_1 with Ã = (mean over heads + I) / 2, rows renormalised: ``(B, T, T)``."""
    result = None
    for a in attentions:
        fused = a.float().mean(dim=1)  # (B, T, T)
        if discard > 0:
            flat = fused.flatten(1).clone()
            k = int(flat.shape[1] * discard)
            if k:
                lowest = flat.topk(k, dim=1, largest=False).indices
                flat.scatter_(1, lowest, 0.0)
                flat[:, 0] = fused.flatten(1)[:, 0]  # the class token's attention to itself is kept
            fused = flat.view_as(fused)
        eye = torch.eye(fused.shape[-1], device=fused.device)
        step = (fused + eye) / 2
        step = step / step.sum(dim=-1, keepdim=True)
        result = step if result is None else step @ result
    return result


@register
class AttentionRollout(Method):
    id = "attention-rollout"
    title = "Attention rollout"
    family = "attention"
    convention = "unit"
    reference = "Abnar & Zuidema, ACL 2020"
    class_sensitive = False
    needs_attention = True
    cost = "sampled"

    @classmethod
    def defaults(cls) -> dict:
        return {"discard": 0.0}

    def compute(self, ctx: ExplainContext, targets: list[int]) -> torch.Tensor:
        grid = ctx.grid
        if grid.layout != "tokens":
            raise ValueError("attention rollout needs a vision transformer (a target layer of patch tokens)")
        attentions = record_attention(ctx.network, ctx.inputs.detach())
        if not attentions:
            raise ValueError("attention rollout found no self-attention blocks it can read")
        r = rollout(attentions, float(self.params["discard"]))
        p = grid.prefix
        flows = r[:, 0, p:] if p else r[:, p:, p:].mean(dim=1)  # the class token's row, or the patches' mean
        maps = flows.reshape(-1, grid.rows, grid.cols)
        ctx.report(1.0)
        return maps.expand(len(targets), *maps.shape)
