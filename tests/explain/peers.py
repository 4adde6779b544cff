"""Networks and helpers shared by the explanation tests."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

ARCHS = ("resnet18", "densenet121", "mobilenet_v3_small", "vgg11")
LAYERS = {
    "resnet18": "layer4",
    "densenet121": "features",
    "mobilenet_v3_small": "features",
    "vgg11": "features",
}
SIZE = 96


def random_network(arch: str, seed: int = 0) -> nn.Module:
    """A torchvision network with fixed random weights and BatchNorm statistics (eval mode)."""
    torch.manual_seed(seed)
    net = torchvision.models.get_model(arch, weights=None, num_classes=6)
    g = torch.Generator().manual_seed(seed + 1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            # Non-trivial running statistics, so normalisation is not the identity.
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
    return net.eval()


def random_input(seed: int = 0, size: int = SIZE, channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # Smooth structure plus noise, so maps have shape rather than pure noise.
    low = torch.randn(1, channels, size // 8, size // 8, generator=g)
    x = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return x + 0.3 * torch.randn(1, channels, size, size, generator=g)


class CleanDenseNet(nn.Module):
    """torchvision DenseNet with its trailing functional in-place ReLU made a separate, out-of-place
    module: the same function, but every peer's hooks see the ReLU and intact activations."""

    def __init__(self, densenet: nn.Module):
        super().__init__()
        self.features = densenet.features
        self.relu = nn.ReLU()
        self.classifier = densenet.classifier

    def forward(self, x):
        out = self.relu(self.features(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def oracle_network(arch: str, net: nn.Module) -> nn.Module:
    return CleanDenseNet(net) if arch == "densenet121" else net


def pearson(a, b) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def snapshot(net: nn.Module) -> dict:
    """Everything about a network that a saliency method must leave as it was."""
    return {
        "state": {k: v.clone() for k, v in net.state_dict().items()},
        "modules": [(name, type(m), id(m), getattr(m, "inplace", None)) for name, m in net.named_modules()],
        "hooks": sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in net.modules()
        ),
        "grad": [p.requires_grad for p in net.parameters()],
        "training": net.training,
    }


def same_snapshot(a: dict, b: dict) -> bool:
    return (
        a["modules"] == b["modules"]
        and a["hooks"] == b["hooks"]
        and a["grad"] == b["grad"]
        and a["training"] == b["training"]
        and all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
    )
