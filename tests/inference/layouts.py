"""Helpers for the model-layout tests: seeded weights and manifests a user could write."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import torch
from torch import nn

from viewer.inference.model import LoadedModel


def seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random but reproducible weights, BatchNorm statistics and LayerNorm gains included (zeros,
    as torchvision gives a ViT head, would hide renames and make gradients vanish)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.randn(tensor.shape, generator=generator) * 0.05
                tensor.copy_(values.abs() + 0.5 if name.endswith("running_var") else values)
        for module in model.modules():
            if isinstance(module, nn.LayerNorm) and module.weight is not None:
                module.weight.add_(1.0)
    return model.eval()


def write_manifest(
    folder: Path,
    arch: str,
    weights: str,
    *,
    labels: list[str],
    in_channels: int = 3,
    size: tuple[int, int] = (64, 64),
    task: str = "multilabel",
    network: str = "",
    inputs: str = "",
) -> Path:
    """A manifest as the README shows it, for ``arch`` with ``weights`` beside it."""
    path = Path(folder) / "manifest.toml"
    quoted = ", ".join(f'"{label}"' for label in labels)
    path.write_text(
        textwrap.dedent(f"""\
        name = "user model"
        task = "{task}"
        labels = [{quoted}]

        [network]
        arch = "{arch}"
        weights = "{weights}"
        in_channels = {in_channels}
        """)
        + textwrap.dedent(network)
        + textwrap.dedent(f"""
        [input]
        size = [{size[0]}, {size[1]}]
        mean = [0.5]
        std = [0.25]
        """)
        + textwrap.dedent(inputs)
    )
    return path


def users_output(loaded: LoadedModel, users: nn.Module, image, activation=None) -> np.ndarray:
    """The user's own model on the viewer's prepared input (``activation`` applied to logits)."""
    x, _ = loaded.prepare(image)
    with torch.no_grad():
        out = users.eval()(x[None])
        out = activation(out) if activation is not None else out
    return out.numpy()[0]


def assert_same_probabilities(loaded: LoadedModel, users: nn.Module, image, activation=None) -> np.ndarray:
    ours = loaded.predict(image).probabilities[0]
    np.testing.assert_allclose(ours, users_output(loaded, users, image, activation), rtol=1e-4, atol=1e-5)
    return ours
