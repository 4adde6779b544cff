"""A network of the kind researchers write themselves, for the ``.pt2`` and ``python:`` tests:
functional and in-place ReLUs, a skip connection and a non-standard head. Tests copy this file
beside a manifest as the user's own ``net.py``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CustomNet(nn.Module):
    def __init__(self, in_channels: int = 3, classes: int = 3, width: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.block = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
        )
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.head = nn.ModuleDict({"score": nn.Linear(4 * width, classes), "gate": nn.Linear(4 * width, 1)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.stem(x))
        y = F.relu_(self.block(y) + y)  # skip connection, in-place functional ReLU
        z = torch.relu(self.down(y))
        pooled = torch.cat([z.mean(dim=(2, 3)), z.amax(dim=(2, 3))], dim=1)
        return self.head["score"](pooled) * torch.sigmoid(self.head["gate"](pooled))
