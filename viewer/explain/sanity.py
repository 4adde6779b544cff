"""Model-randomisation sanity check (Adebayo et al., NeurIPS 2018), cascading from the top.

The weights of the network's blocks are re-initialised from the logits downwards, one more block
per stage, on a copy of the network (the user's model is never touched), and the map is computed
again at every stage. A map that explains the model must change; one that barely changes shows
input structure instead (Guided Backprop and Guided Grad-CAM are the published examples).
Similarity is measured between maps on the model-input grid scaled to [0, 1]: Spearman rank
correlation of the magnitudes, and SSIM.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from viewer.explain.context import CancelFlag, ExplainContext
from viewer.explain.registry import Method
from viewer.explain.similarity import spearman, ssim, unit_scaled
from viewer.inference.feature_grid import NCHW, FeatureGrid
from viewer.inference.output_head import OutputHead

# A map whose rank correlation with the original stays at or above this after the top blocks are
# randomised is flagged as insensitive to the model. Adebayo et al. report Grad-CAM and the plain
# gradient falling to ~0.1-0.3 within the top blocks, Guided Backprop staying ~0.6-0.9.
SENSITIVITY_THRESHOLD = 0.5


@dataclass
class SanityStage:
    block: str  # the deepest block randomised at this stage
    spearman: float  # rank correlation of |map|
    ssim: float


@dataclass
class SanityResult:
    method: str
    target: int
    stages: list[SanityStage] = field(default_factory=list)
    threshold: float = SENSITIVITY_THRESHOLD

    @property
    def passed(self) -> bool:
        """True when the map changed with the model (final stage below the threshold)."""
        return bool(self.stages) and self.stages[-1].spearman < self.threshold

    @property
    def verdict(self) -> str:
        return "model-sensitive" if self.passed else "insensitive to the model"


def cascade_blocks(network: nn.Module) -> list[str]:
    """Names of the network's parameterised blocks from the output down: top-level children, with
    ``nn.Sequential`` containers (ResNet stages, VGG/DenseNet/MobileNet ``features``) opened one
    level."""
    blocks = []
    for name, child in network.named_children():
        if not any(True for _ in child.parameters()):
            continue
        kids = [f"{name}.{n}" for n, c in child.named_children() if any(True for _ in c.parameters())]
        blocks += kids if isinstance(child, nn.Sequential) and len(kids) > 1 else [name]
    return blocks[::-1]


def randomise(module: nn.Module, seed: int) -> None:
    """Re-initialise every parameterised submodule as at construction (its own init scheme), with a
    fixed seed and without disturbing the global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in module.modules():
            if hasattr(m, "reset_parameters") and any(True for _ in m.parameters(recurse=False)):
                m.reset_parameters()


def _scaled_map(method: Method, ctx: ExplainContext, target: int) -> np.ndarray:
    raw = method.compute(ctx, [target])[0, :1].float()  # (1, h, w) of the first frame
    size = ctx.inputs.shape[-2:]
    if tuple(raw.shape[-2:]) != tuple(size):
        raw = F.interpolate(raw[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    if method.convention == "unit":
        raw = raw.clamp(min=0)
    return unit_scaled(raw[0].abs().detach().cpu().numpy())


def cascading_randomization(
    network: nn.Module,
    layer: str,
    inputs: torch.Tensor,
    method: Method,
    target: int,
    *,
    task: str = "multilabel",
    head: OutputHead | None = None,
    grid: FeatureGrid = NCHW,
    stages: int = 3,
    seed: int = 0,
    cancel: CancelFlag | None = None,
    progress: Callable[[float], None] | None = None,
) -> SanityResult:
    """Similarity of ``method``'s map for ``target`` on ``inputs`` (one frame, ``(1, C, H, W)``)
    before and after randomising the top 1..``stages`` blocks of ``network``."""
    blocks = cascade_blocks(network)[:stages]

    def run(net: nn.Module, part: int) -> np.ndarray:
        with ExplainContext(
            net,
            layer,
            inputs,
            task=task,
            head=head,
            grid=grid,
            seed=seed,
            input_grads=method.needs_input_grads,
            cancel=cancel,
        ) as ctx:
            if progress is not None:
                ctx.progress = lambda f: progress((part + f) / (len(blocks) + 1))
            return _scaled_map(method, ctx, target)

    original = run(network, 0)
    copy_ = copy.deepcopy(network)
    result = SanityResult(method.id, target)
    for i, block in enumerate(blocks):
        randomise(copy_.get_submodule(block), seed + i + 1)
        changed = run(copy_, i + 1)
        result.stages.append(SanityStage(block, spearman(original, changed), ssim(original, changed)))
    return result
