"""Where a network keeps a spatial grid of features, and how to read it as ``(B, K, u, v)``.

CNN layers give ``(B, C, u, v)``. Swin stages give ``(B, u, v, C)`` (channels last). Vision
transformers give tokens ``(B, T, D)``: a few leading tokens (class, distillation, registers)
and then one token per image patch, row by row. A :class:`FeatureGrid` turns any of these into
``(B, C, u, v)``, the leading tokens dropped, and is linear, so activations and their gradients
go through it alike (what pytorch-grad-cam's ``reshape_transform`` does by hand).

The layout is told from shapes alone: the grid's two axes divide the input's height and width by
about the same stride. The default target layer is the last layer with a grid, except in a
transformer whose head reads a class token: after the last block's attention only that token
reaches the head, so patch tokens there get no gradient. There it is the first LayerNorm of the
last block (the input of its attention), as pytorch-grad-cam's documentation has it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

Layout = Literal["nchw", "nhwc", "tokens"]
_MAX_PREFIX = 16  # class + distillation + register tokens: timm has at most a handful


@dataclass(frozen=True)
class FeatureGrid:
    """How a layer's output maps to ``(B, C, rows, cols)``."""

    layout: Layout = "nchw"
    rows: int = 0
    cols: int = 0
    prefix: int = 0  # leading tokens that are not patches (dropped)
    depth: int = 0  # a 3-D network's layer: (B, C, depth, rows, cols)

    def to_nchw(self, t: torch.Tensor) -> torch.Tensor:
        if self.layout == "nhwc":
            return t.permute(0, 3, 1, 2)
        if self.layout == "tokens":
            patches = t[:, self.prefix :, :]
            return patches.reshape(t.shape[0], self.rows, self.cols, t.shape[-1]).permute(0, 3, 1, 2)
        return t

    def describe(self) -> str:
        if self.layout == "tokens":
            dropped = f", {self.prefix} leading token(s) dropped" if self.prefix else ""
            return f"{self.rows} x {self.cols} patch tokens{dropped}"
        order = "channels last, permuted" if self.layout == "nhwc" else "channels first"
        size = f"{self.depth} x " if self.depth else ""
        return f"{size}{self.rows} x {self.cols} grid ({order})"


NCHW = FeatureGrid()


@dataclass(frozen=True)
class LayerOutput:
    """One module's output in a probing forward pass."""

    name: str
    kind: str  # the module's class name
    shape: tuple[int, ...]
    grid: FeatureGrid | None


def _strides_agree(rows: int, cols: int, height: int, width: int) -> bool:
    if not (1 < rows <= height and 1 < cols <= width):
        return False
    a, b = height / rows, width / cols
    return abs(a - b) <= 0.25 * max(a, b)


def grid_of(
    shape: tuple[int, ...],
    height: int,
    width: int,
    prefix_hint: int | None = None,
    channels_last: bool = False,
) -> FeatureGrid | None:
    """The grid a layer output of ``shape`` holds for an input of ``height`` x ``width``, or None.
    ``channels_last``: the network says its 4-D outputs are ``(B, H, W, C)`` (Keras), which shapes
    alone cannot tell when ``C`` equals the grid's size."""
    if channels_last and len(shape) == 4:
        return (
            FeatureGrid("nhwc", shape[1], shape[2])
            if _strides_agree(shape[1], shape[2], height, width)
            else None
        )
    if len(shape) == 5:  # a 3-D network: (B, C, depth, rows, cols)
        if shape[2] >= 1 and _strides_agree(shape[3], shape[4], height, width):
            return FeatureGrid("nchw", shape[3], shape[4], depth=shape[2])
        return None
    if len(shape) == 4:
        if _strides_agree(shape[2], shape[3], height, width):
            return FeatureGrid("nchw", shape[2], shape[3])
        if _strides_agree(shape[1], shape[2], height, width):
            return FeatureGrid("nhwc", shape[1], shape[2])
        return None
    if len(shape) != 3:
        return None
    tokens = shape[1]
    prefixes = [prefix_hint] if prefix_hint is not None else range(min(_MAX_PREFIX, tokens - 1) + 1)
    for prefix in prefixes:
        n = tokens - prefix
        rows = round(math.sqrt(n * height / width))
        for r in (rows - 1, rows, rows + 1):
            if r > 1 and n % r == 0 and _strides_agree(r, n // r, height, width):
                return FeatureGrid("tokens", r, n // r, prefix)
    return None


def _prefix_hint(network: nn.Module) -> int | None:
    if isinstance(getattr(network, "num_prefix_tokens", None), int):  # timm's transformers say it
        return network.num_prefix_tokens
    if isinstance(getattr(network, "class_token", None), nn.Parameter):  # torchvision's ViT
        return 1
    return None


# Adaptive pools resample to a fixed grid (VGG's 7 x 7) but hold no features of their own.
_NOT_FEATURES = (
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool3d,
    nn.Dropout,
    nn.Identity,
)


def probe_layers(network: nn.Module, input_shape: tuple[int, ...]) -> list[LayerOutput]:
    """Every module's output in execution order for one zero input ``(C, H, W)`` or
    ``(C, D, H, W)`` (on the
    network's device). Modules that return something other than one tensor are left out."""
    order: list[LayerOutput] = []
    height, width = input_shape[-2:]
    hint = _prefix_hint(network)
    nhwc = bool(getattr(network, "channels_last_features", False))

    def seen(module, _args, output, name):
        if isinstance(output, torch.Tensor) and not isinstance(module, _NOT_FEATURES):
            shape = tuple(output.shape)
            order.append(
                LayerOutput(name, type(module).__name__, shape, grid_of(shape, height, width, hint, nhwc))
            )

    hooks = [
        module.register_forward_hook(lambda m, i, o, name=name: seen(m, i, o, name))
        for name, module in network.named_modules()
        if name
    ]
    device = next((p.device for p in network.parameters()), torch.device("cpu"))
    try:
        with torch.inference_mode():
            network(torch.zeros(1, *input_shape, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return order


def _is_attention(kind: str, module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or "Attention" in kind


def attention_blocks(network: nn.Module) -> list[nn.Module]:
    """The self-attention modules whose attention can be recomputed from their own projections
    (torchvision's ``nn.MultiheadAttention``, timm's ``Attention`` with ``qkv``), in definition order."""
    return [
        m
        for m in network.modules()
        if isinstance(m, nn.MultiheadAttention)
        or (
            isinstance(getattr(m, "qkv", None), nn.Linear) and hasattr(m, "num_heads") and hasattr(m, "scale")
        )
    ]


def choose_target_layer(network: nn.Module, layers: list[LayerOutput]) -> str:
    """The default target layer among the probed ``layers`` (see the module's docstring)."""
    gridded = [layer for layer in layers if layer.grid is not None]
    if not gridded:
        raise ValueError("no layer of the network keeps a spatial grid")
    last = gridded[-1]
    if last.grid.layout != "tokens" or last.grid.prefix == 0:
        return last.name
    modules = dict(network.named_modules())
    attention = [name for name, m in modules.items() if name and _is_attention(type(m).__name__, m)]
    if not attention:
        return last.name
    block = attention[-1].rpartition(".")[0]
    for layer in gridded:
        if layer.name.startswith(block + ".") and isinstance(modules[layer.name], nn.LayerNorm):
            return layer.name
    return last.name


def find_target_layer(network: nn.Module, input_shape: tuple[int, ...]) -> str:
    """The default target layer: the last module (in execution order) whose output still has a
    spatial grid of features, or in a class-token transformer the last block's first LayerNorm."""
    return choose_target_layer(network, probe_layers(network, input_shape))


def layer_grid(layers: list[LayerOutput], name: str) -> FeatureGrid:
    """The grid of layer ``name`` among the probed ``layers``, or ValueError saying why none."""
    for layer in layers:
        if layer.name == name:
            if layer.grid is None:
                raise ValueError(
                    f"target layer {name!r} outputs {layer.shape}: not a spatial grid nor patch tokens"
                )
            return layer.grid
    raise ValueError(f"target layer {name!r} did not run in the forward pass (or returns no single tensor)")


__all__ = [
    "NCHW",
    "FeatureGrid",
    "LayerOutput",
    "attention_blocks",
    "choose_target_layer",
    "find_target_layer",
    "grid_of",
    "layer_grid",
    "probe_layers",
]
