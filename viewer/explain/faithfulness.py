"""Does the model's score follow the map? Deletion and insertion curves (Petsiuk et al., RISE).

Deletion replaces the most salient pixels first and tracks the target's probability: a faithful
map makes it fall fast (low AUC). Insertion starts from a blurred image and restores the most
salient pixels first: a faithful map makes it rise fast (high AUC). Pixels are ranked by the map
on the model-input grid, ties by position, as RISE's ``CausalMetric``.

Deleted pixels take the blurred image's value by default rather than zero: on a radiograph black
is air, which is itself a finding (pneumothorax), so zeroing pixels adds evidence rather than
removing it. ``substrate="zeros"`` gives RISE's original deletion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from viewer.explain.context import ExplainContext
from viewer.explain.gradients import gaussian_blur


@dataclass
class CausalCurve:
    kind: str  # "deletion" or "insertion"
    fractions: np.ndarray  # share of pixels changed at each point, 0..1
    scores: np.ndarray  # target probability at each point
    auc: float


def adaptive_steps(height: int, width: int) -> int:
    """Deletion/insertion steps for a model input of ``height x width``: each step changes at
    least 1,024 pixels (a 32 x 32 patch), between 10 and 50 steps (RISE's 224 px: 49)."""
    return int(min(50, max(10, -(-height * width // 1024))))


def blurred(x: torch.Tensor) -> torch.Tensor:
    """RISE's blur (sigma 5 px at 224 px), scaled to the input's width. ``x`` is ``(C, H, W)``."""
    return gaussian_blur(x[None], sigma=5.0 * x.shape[-1] / 224)[0]


def causal_curves(
    ctx: ExplainContext,
    saliency: np.ndarray | torch.Tensor,
    target: int,
    *,
    frame: int = 0,
    steps: int | None = 50,
    substrate: str = "blur",
) -> tuple[CausalCurve, CausalCurve]:
    """Deletion and insertion curves of one map ``(H, W)`` on the model-input grid for input
    ``ctx.inputs[frame]``, each with ``steps + 1`` points evaluated in batches (``steps`` None:
    ``adaptive_steps`` of the input)."""
    x = ctx.inputs[frame].detach()
    h, w = x.shape[-2:]
    steps = adaptive_steps(h, w) if steps is None else steps
    values = torch.as_tensor(np.asarray(saliency, np.float32)).reshape(-1)
    if values.numel() != h * w:
        raise ValueError(f"map of {values.numel()} values for a {h}x{w} input")
    order = torch.from_numpy(np.argsort(-values.numpy(), kind="stable"))
    rank = torch.empty(h * w, dtype=torch.long)
    rank[order] = torch.arange(h * w)
    rank = rank.view(h, w).to(x.device)
    per_step = -(-h * w // steps)
    counts = [min(h * w, k * per_step) for k in range(steps + 1)]
    blur = blurred(x)
    removed = blur if substrate == "blur" else torch.zeros_like(x)
    if substrate not in ("blur", "zeros"):
        raise ValueError(f"unknown substrate {substrate!r} (blur or zeros)")

    def curve(kind: str, start: torch.Tensor, end: torch.Tensor) -> CausalCurve:
        def make_batch(a: int, b: int) -> torch.Tensor:
            changed = torch.stack([rank < counts[k] for k in range(a, b)])[:, None]
            return torch.where(changed, end[None], start[None])

        scores = ctx.scores(make_batch, len(counts))[:, target].cpu().numpy().astype(np.float64)
        n = len(scores)
        auc = (scores.sum() - scores[0] / 2 - scores[-1] / 2) / (n - 1)
        return CausalCurve(kind, np.asarray(counts) / (h * w), scores, float(auc))

    with ctx.part(0, 2):
        deletion = curve("deletion", x, removed)
    with ctx.part(1, 2):
        insertion = curve("insertion", blur, x)
    return deletion, insertion
