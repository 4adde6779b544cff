"""The CAM family: maps on the target layer's grid from its activations A and gradients G = dy_c/dA.

All gradient-based CAM maps of all labels come from one recorded forward pass (one backward to the
target layer per label, shared by every method). Raw maps are returned before the final ReLU; the
engine rectifies and scales them. Formulas and constants follow ``pytorch-grad-cam`` where it
follows the papers, so maps can be compared one to one.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from viewer.explain.context import ExplainContext
from viewer.explain.registry import Method, register


def spatial(t: torch.Tensor) -> tuple[int, ...]:
    """The grid axes of ``(B, K, u, v)`` or, in a 3-D network, ``(B, K, d, u, v)``."""
    return tuple(range(2, t.ndim))


class _GradientCAM(Method):
    family = "cam"
    needs_layer = True
    convention = "unit"
    volumetric = True

    def compute(self, ctx: ExplainContext, targets: list[int]) -> torch.Tensor:
        a = ctx.activations
        maps = []
        for i, target in enumerate(targets):
            maps.append(self.combine(a, ctx.activation_grads(target)))
            ctx.report((i + 1) / len(targets))
        return torch.stack(maps)

    def combine(self, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Raw map ``(B, u, v)`` from activations and gradients ``(B, K, u, v)`` (a depth axis
        before ``u`` in a 3-D network)."""
        raise NotImplementedError


def weighted_sum(weights: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return torch.einsum("bk,bk...->b...", weights, a)


@register
class GradCAM(_GradientCAM):
    id = "gradcam"
    default = True
    title = "Grad-CAM"
    reference = "Selvaraju et al., ICCV 2017"

    def combine(self, a, g):
        return weighted_sum(g.mean(dim=spatial(g)), a)


@register
class GradCAMPlusPlus(_GradientCAM):
    id = "gradcam++"
    default = True
    title = "Grad-CAM++"
    reference = "Chattopadhay et al., WACV 2018 (eq. 19, exp(y) factor dropped)"

    def combine(self, a, g):
        g2 = g * g
        denominator = 2 * g2 + a.sum(dim=spatial(a), keepdim=True) * g2 * g + 1e-6
        alpha = torch.where(g != 0, g2 / denominator, torch.zeros_like(g))
        return weighted_sum((alpha * g.clamp(min=0)).sum(dim=spatial(g)), a)


@register
class XGradCAM(_GradientCAM):
    id = "xgradcam"
    title = "XGrad-CAM"
    reference = "Fu et al., BMVC 2020"

    def combine(self, a, g):
        weights = (g * a / (a.sum(dim=spatial(a), keepdim=True) + 1e-7)).sum(dim=spatial(a))
        return weighted_sum(weights, a)


@register
class LayerCAM(_GradientCAM):
    id = "layercam"
    title = "LayerCAM"
    reference = "Jiang et al., IEEE TIP 2021 (single layer)"

    def combine(self, a, g):
        return (g.clamp(min=0) * a).sum(dim=1)


@register
class HiResCAM(_GradientCAM):
    id = "hirescam"
    title = "HiResCAM"
    reference = "Draelos & Carin, arXiv 2011.08891"

    def combine(self, a, g):
        return (g * a).sum(dim=1)


@register
class EigenCAM(Method):
    id = "eigencam"
    caveat = "class-agnostic: the same map for every label"
    title = "Eigen-CAM"
    family = "cam"
    convention = "unit"
    reference = "Muhammad & Yeasin, IJCNN 2020"
    needs_layer = True
    volumetric = True
    class_sensitive = False  # the first principal component of A: the same map for every label

    def compute(self, ctx: ExplainContext, targets: list[int]) -> torch.Tensor:
        projection = first_component(ctx.activations)
        ctx.report(1.0)
        return projection.expand(len(targets), *projection.shape)


def first_component(a: torch.Tensor) -> torch.Tensor:
    """Projection of each location's centred feature vector on the first right-singular vector,
    ``(B, u, v)`` (``(B, d, u, v)`` in 3-D). The SVD's sign is arbitrary: it is chosen so the
    strongest response is positive (pytorch-grad-cam's ``get_2d_projection`` leaves it to chance, so
    its map can come out inverted and then vanish under the final ReLU)."""
    b, k = a.shape[:2]
    flat = a.reshape(b, k, -1).transpose(1, 2).double()
    flat = flat - flat.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(flat, full_matrices=False)
    projection = (flat @ vh[:, 0, :, None]).squeeze(-1)
    flip = projection.amin(dim=1).abs() > projection.amax(dim=1).abs()
    projection = torch.where(flip[:, None], -projection, projection)
    return projection.reshape(b, *a.shape[2:]).float()


@register
class ScoreCAM(Method):
    """Each activation channel, upsampled to the input and min-max scaled, masks the input; the
    channel's weight comes from the target's score on the masked input.

    A constant channel (often all-zero after a ReLU) masks everything out, so its input is the
    zero image for every such channel: one forward pass serves them all. Under the paper's weights
    its weight is then exactly 0 and it is skipped."""

    id = "scorecam"
    seconds = 3.5
    report: ClassVar[dict] = {}
    cost = "sampled"
    title = "Score-CAM"
    family = "cam"
    needs_layer = True
    volumetric = True
    convention = "unit"
    reference = "Wang et al., CVPR-W 2020"

    @classmethod
    def defaults(cls) -> dict:
        # "increase": w_k = p_c(X * H_k) - p_c(X * 0), the paper's increase of confidence with the
        # model's own probability (sigmoid or softmax); bilinear upsampling as for every CAM map.
        # "softmax-channels": pytorch-grad-cam's variant, exactly: a softmax of the target logits
        # across channels, masks upsampled with align_corners=True and scaled with eps 1e-8.
        # "channels": score only the N channels of largest spatial variance per image (Faster
        # Score-CAM; the others weigh 0); 0 scores every channel (``scorecam-exact``).
        return {"weights": "increase", "channels": 128}

    def compute(self, ctx: ExplainContext, targets: list[int]) -> torch.Tensor:
        variant = self.params["weights"]
        if variant not in ("increase", "softmax-channels"):
            raise ValueError(f"scorecam: unknown weights {variant!r}")
        peer = variant == "softmax-channels"
        a = ctx.activations
        b, k = a.shape[:2]
        x = ctx.inputs.detach()
        axes = spatial(a)
        size = x.shape[2:]
        mode = "trilinear" if len(axes) == 3 else "bilinear"
        live = (a.amax(dim=axes) - a.amin(dim=axes)) > 0  # (B, K)
        chosen = self.params.get("channels", 0)  # scorecam-exact has no such parameter: every channel
        if 0 < chosen < k:
            variance = a.flatten(2).var(dim=2).masked_fill(~live, -1)
            top = variance.topk(chosen, dim=1).indices
            live &= torch.zeros_like(live).scatter_(1, top, True)
        index = live.nonzero()  # rows (sample, channel)

        def make_batch(start: int, stop: int) -> torch.Tensor:
            rows = index[start:stop]
            up = F.interpolate(a[rows[:, 0], rows[:, 1]][:, None], size=size, mode=mode, align_corners=peer)
            low = up.amin(dim=axes, keepdim=True)
            span = up.amax(dim=axes, keepdim=True) - low
            return x[rows[:, 0]] * ((up - low) / (span + 1e-8 if peer else span))

        scores = ctx.scores(make_batch, len(index), logits=peer)[:, targets]  # (n_live, T)
        blank = ctx.evaluate(torch.zeros_like(x), logits=peer)[:, targets]  # (B, T): X * 0
        weights = blank.T[:, :, None].expand(len(targets), b, k).clone()
        weights[:, index[:, 0], index[:, 1]] = scores.T.to(weights.dtype)
        # The paper's increase of confidence is exactly 0 for dead channels.
        weights = torch.softmax(weights, dim=-1) if peer else weights - blank.T[:, :, None]
        return torch.einsum("tbk,bk...->tb...", weights.to(a.dtype), a)


@register
class ScoreCAMExact(ScoreCAM):
    """Score-CAM over every channel of the target layer, as the paper and pytorch-grad-cam do: one
    forward per live channel (1,024 on DenseNet-121, 2,048 on ResNet-50)."""

    id = "scorecam-exact"
    seconds = 15.0
    title = "Score-CAM (every channel)"

    @classmethod
    def defaults(cls) -> dict:
        return {"weights": "increase"}
