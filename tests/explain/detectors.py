"""A small seeded torchvision detector shared by the detection tests: every run sees the same
weights, made from ``torch.manual_seed`` (nothing downloaded)."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"
SIZE = 128
# The last stage of the MobileNetV3 body: every FPN level, and so every box, is computed from it.
LAYER = "backbone.body.16"


def spread_statistics(net: nn.Module, seed: int) -> nn.Module:
    """Non-default normalisation statistics (BatchNorm, and torchvision's FrozenBatchNorm2d) drawn
    from ``seed``: boxes then differ from box to box, and a layer loaded in the wrong place
    changes them. Returns ``net`` in eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if getattr(m, "running_var", None) is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
    return net.eval()


def detector(seed: int = 0, labels: int = 2, size: int = SIZE) -> nn.Module:
    """Faster R-CNN (MobileNetV3-Large 320 FPN), built as the viewer builds it (no normalisation
    of its own, no second resize), BatchNorm statistics and the class scores' weights spread so
    that its scores differ from box to box (random initial weights give every box ~1/(K+1))."""
    torch.manual_seed(seed)
    net = torchvision.models.get_model(
        ARCH,
        weights=None,
        weights_backbone=None,
        num_classes=labels + 1,
        image_mean=[0.0] * 3,
        image_std=[1.0] * 3,
        min_size=size,
        max_size=size,
    )
    spread_statistics(net, seed + 1)
    with torch.no_grad():
        net.roi_heads.box_predictor.cls_score.weight.mul_(300.0)
    return net.eval()


# FCOS on MobileNetV3-Small's body, as a notebook assembles it from torchvision's parts (the
# layout ``arch = "fcos:mobilenet_v3_small"`` builds): a one-stage, anchor-free detector.
FCOS_LAYER = "backbone.body.8"  # the body's stride-16 block: P4, P5, P6 and P7 come from it


def fcos_detector(seed: int = 0, labels: int = 2, size: int = SIZE, channels: int = 64) -> nn.Module:
    """torchvision's ``FCOS`` on ``BackboneWithFPN(mobilenet_v3_small().features)`` read at strides
    8, 16 and 32, BatchNorm statistics and class logits spread as in :func:`detector`."""
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    torch.manual_seed(seed)
    body = torchvision.models.mobilenet_v3_small(weights=None).features
    levels = {"3": "0", "8": "1", "12": "2"}  # the last blocks at strides 8, 16 and 32
    pyramid = BackboneWithFPN(body, levels, [24, 48, 576], channels, LastLevelP6P7(channels, channels))
    net = FCOS(
        pyramid, labels + 1, min_size=size, max_size=size,
        image_mean=[0.0] * 3, image_std=[1.0] * 3, score_thresh=0.05,
    )  # fmt: skip
    spread_statistics(net, seed + 1)
    with torch.no_grad():
        net.head.classification_head.cls_logits.weight.mul_(30.0)
        # Distances from a point to the box's sides through a ReLU: at random weights half are 0
        # (boxes of no width); a positive bias gives boxes a few strides wide that still vary.
        net.head.regression_head.bbox_reg.bias.fill_(1.5)
    return net.eval()
