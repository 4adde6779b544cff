"""Networks the API tests explain: a notebook-style custom module and its oracle twin."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn


class ChestNet(nn.Module):
    """A custom classifier as notebooks write them: functional and in-place ReLUs, a skip
    connection, and a non-standard head (global max pool, then two Linear layers)."""

    def __init__(self, in_channels: int = 3, classes: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.down = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.fc1 = nn.Linear(16, 12)
        self.fc2 = nn.Linear(12, classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = torch.relu(self.block(x) + x)  # skip connection
        x = self.down(x).relu_()  # in place
        x = torch.amax(x, dim=(2, 3))  # global max pool
        return self.fc2(F.relu(self.fc1(x), inplace=True))


class ChestNetTwin(nn.Module):
    """The same function with every ReLU an out-of-place ``nn.ReLU`` module (shared weights): the
    form the peer libraries' hooks need."""

    def __init__(self, net: ChestNet):
        super().__init__()
        self.stem, self.block, self.down, self.fc1, self.fc2 = net.stem, net.block, net.down, net.fc1, net.fc2
        self.relu1, self.relu2, self.relu3, self.relu4 = nn.ReLU(), nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x):
        x = self.relu1(self.stem(x))
        x = self.relu2(self.block(x) + x)
        x = self.relu3(self.down(x))
        x = torch.amax(x, dim=(2, 3))
        return self.fc2(self.relu4(self.fc1(x)))


def chest_net(seed: int = 0, in_channels: int = 3) -> ChestNet:
    torch.manual_seed(seed)
    net = ChestNet(in_channels)
    bn = net.block[1]
    bn.running_mean.normal_(0, 0.1)
    bn.running_var.uniform_(0.75, 1.25)
    return net


def fine_tuned_resnet18(seed: int = 0, classes: int = 3) -> nn.Module:
    """A torchvision ResNet-18 with a new 3-class head, as after fine-tuning (random weights)."""
    torch.manual_seed(seed)
    net = torchvision.models.resnet18(weights=None)
    net.fc = nn.Linear(net.fc.in_features, classes)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.75, 1.25)
    return net


def smooth_input(seed: int = 0, size: tuple[int, int] = (48, 40), channels: int = 3) -> torch.Tensor:
    """(1, C, H, W): smooth structure plus noise, so maps have shape."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(1, channels, size[0] // 8, size[1] // 8, generator=g)
    x = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
    return x + 0.3 * torch.randn(1, channels, *size, generator=g)
