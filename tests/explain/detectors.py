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
    g = torch.Generator().manual_seed(seed + 1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
    with torch.no_grad():
        net.roi_heads.box_predictor.cls_score.weight.mul_(300.0)
    return net.eval()
