"""A vision transformer's attention probabilities as tensors gradients reach.

torchvision's ``nn.MultiheadAttention`` and timm's ``Attention`` run fused kernels that return no
weights. While ``differentiable_attention`` is active, each block's attention output is
recomputed from explicit probabilities ``A = softmax(q k^T / sqrt(d))`` by a forward hook and
returned in place of the fused result (the same values), so ``A`` is on the path to the logits;
each ``A`` ``(B, heads, T, T)`` and each transformer block's output tokens ``(B, T, C)`` are
recorded in execution order. Hooks are removed on exit, whatever happens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from viewer.inference.feature_grid import attention_blocks


@dataclass
class AttentionGraph:
    attentions: list[torch.Tensor] = field(default_factory=list)  # (B, heads, T, T) per block
    blocks: list[torch.Tensor] = field(default_factory=list)  # (B, T, C) per block


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, e = t.shape
    return t.reshape(b, n, heads, e // heads).transpose(1, 2)


def _mha(module: nn.MultiheadAttention, graph: AttentionGraph):
    def hook(m, args, kwargs, output):
        query = kwargs.get("query", args[0] if args else None)
        key = kwargs.get("key", args[1] if len(args) > 1 else query)
        value = kwargs.get("value", args[2] if len(args) > 2 else key)
        if not m.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        e, h = m.embed_dim, m.num_heads
        if m._qkv_same_embed_dim:
            w = m.in_proj_weight.chunk(3)
        else:
            w = (m.q_proj_weight, m.k_proj_weight, m.v_proj_weight)
        bias = m.in_proj_bias.chunk(3) if m.in_proj_bias is not None else (None,) * 3
        q, k, v = (
            _heads(F.linear(t, wi, bi), h) for t, wi, bi in zip((query, key, value), w, bias, strict=True)
        )
        attention = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(e // h), dim=-1)
        graph.attentions.append(attention)
        out = (attention @ v).transpose(1, 2).reshape(query.shape[0], query.shape[1], e)
        out = m.out_proj(out)
        if not m.batch_first:
            out = out.transpose(0, 1)
        return out, output[1] if isinstance(output, tuple) else None

    return module.register_forward_hook(hook, with_kwargs=True)


def _timm(module: nn.Module, graph: AttentionGraph):
    def hook(m, args, kwargs, _output):
        x = args[0] if args else kwargs["x"]
        b, n, _ = x.shape
        q, k, v = m.qkv(x).reshape(b, n, 3, m.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = m.q_norm(q), m.k_norm(k)
        attention = torch.softmax((q * m.scale) @ k.transpose(-2, -1), dim=-1)
        graph.attentions.append(attention)
        out = (m.attn_drop(attention) @ v).transpose(1, 2).reshape(b, n, -1)
        norm = getattr(m, "norm", None)
        out = norm(out) if isinstance(norm, nn.Module) else out
        return m.proj_drop(m.proj(out))

    return module.register_forward_hook(hook, with_kwargs=True)


def block_of(network: nn.Module, attention: nn.Module) -> nn.Module:
    """The transformer block an attention module belongs to (its parent)."""
    names = {m: name for name, m in network.named_modules()}
    parent = names[attention].rpartition(".")[0]
    return network.get_submodule(parent) if parent else network


@contextmanager
def differentiable_attention(network: nn.Module) -> Iterator[AttentionGraph]:
    graph = AttentionGraph()
    with ExitStack() as stack:
        for module in attention_blocks(network):
            handle = (
                _mha(module, graph) if isinstance(module, nn.MultiheadAttention) else _timm(module, graph)
            )
            stack.callback(handle.remove)
            block = block_of(network, module)
            handle = block.register_forward_hook(lambda _m, _i, out: graph.blocks.append(out))
            stack.callback(handle.remove)
        yield graph


def readout(network: nn.Module, pooling: str = "model") -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The network's own head applied to any block's tokens (final norm, pooling, classifier), for
    torchvision's and timm's vision transformers; None for others. ``pooling="mean"`` averages all
    tokens instead of the model's own read-out (TorchCAM's LeGrad does so on torchvision ViTs)."""
    for m in network.modules():
        encoder, heads = getattr(m, "encoder", None), getattr(m, "heads", None)
        if isinstance(getattr(encoder, "ln", None), nn.Module) and isinstance(heads, nn.Module):
            if pooling == "mean":
                return lambda t, m=m: m.heads(m.encoder.ln(t.mean(dim=1)))
            return lambda t, m=m: m.heads(m.encoder.ln(t)[:, 0])
        if callable(getattr(m, "forward_head", None)) and isinstance(getattr(m, "norm", None), nn.Module):
            if pooling == "mean":
                return lambda t, m=m: m.head(m.fc_norm(m.norm(t).mean(dim=1)))
            return lambda t, m=m: m.forward_head(m.norm(t))
    return None


__all__ = ["AttentionGraph", "block_of", "differentiable_attention", "readout"]
