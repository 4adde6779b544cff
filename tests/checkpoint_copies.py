"""Three checkpoints of the demo chest ResNet-18 in one manifest (``weights = [...]``): the trained
weights, a copy with small weight noise and a re-initialised network. Their maps should rank in
that order of likeness to the trained one's; the stability tests of the CLI and the viewer use it."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from viewer.explain.sanity import randomise
from viewer.inference.catalog import bundled_models
from viewer.inference.model import LoadedModel

TRAINED, PERTURBED, RANDOM = "trained", "perturbed", "random"


def three_checkpoints(folder: Path) -> Path:
    """Write the three weights files and ``manifest.toml`` naming them into ``folder``; the folder."""
    source = bundled_models()["cxr_resnet18"]
    network = LoadedModel.from_manifest(source).network
    state = {k: v.detach().clone().contiguous() for k, v in network.state_dict().items()}
    save_file(state, str(folder / f"{TRAINED}.safetensors"))
    g = torch.Generator().manual_seed(0)
    noisy = {
        k: v + 0.02 * v.std() * torch.randn(v.shape, generator=g)
        if v.is_floating_point() and v.numel() > 1
        else v
        for k, v in state.items()
    }
    save_file(noisy, str(folder / f"{PERTURBED}.safetensors"))
    randomise(network, seed=1)
    save_file(
        {k: v.detach().clone().contiguous() for k, v in network.state_dict().items()},
        str(folder / f"{RANDOM}.safetensors"),
    )
    text = source.read_text().replace(
        'weights = "weights.safetensors"',
        f'weights = ["{TRAINED}.safetensors", "{PERTURBED}.safetensors", "{RANDOM}.safetensors"]',
    )
    (folder / "manifest.toml").write_text(text.replace('card = "MODEL_CARD.md"\n', ""))
    return folder
