"""Small segmentation networks shared by the segmentation tests: seeded, so every run sees the
same weights."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from viewer.inference.segmentation import take_main_output


class TinyUNet(nn.Module):
    """An encoder-decoder with one skip connection, the shape of a U-Net at its smallest."""

    def __init__(self, labels: int = 3, channels: int = 1):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(8, labels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.enc(x)
        return self.head(self.dec(torch.cat([self.up(self.down(e)), e], dim=1)))


def tiny_unet(seed: int = 0, labels: int = 3, channels: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return TinyUNet(labels, channels).eval()


def deeplab(seed: int = 0, labels: int = 3) -> nn.Module:
    """torchvision's DeepLabV3 (MobileNetV3 backbone) with random weights and BatchNorm statistics,
    returning its ``out`` map as the viewer reads it."""
    torch.manual_seed(seed)
    net = torchvision.models.get_model(
        "deeplabv3_mobilenet_v3_large", weights=None, weights_backbone=None, num_classes=labels
    )
    g = torch.Generator().manual_seed(seed + 1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
    take_main_output(net)
    return net.eval()


# Target layers: the U-Net's bottleneck and a late DeepLab backbone block (pytorch-grad-cam's
# segmentation tutorial explains a backbone's last stage the same way).
LAYERS = {"unet": "down", "deeplab": "backbone.12"}
NETWORKS = {"unet": lambda: tiny_unet(), "deeplab": lambda: deeplab()}
CHANNELS = {"unet": 1, "deeplab": 3}
