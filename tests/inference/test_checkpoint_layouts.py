"""Checkpoints as researchers saved them, rebuilt here from the publishers' code layouts with seeded
random weights (nothing downloaded), loaded through a manifest a user could write, and compared with
the user's own ``model(x)``; and a corpus of malicious pickles, each refused with no side effect."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
import textwrap

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from tests.inference.layouts import seeded
from viewer.inference.checkpoint import CheckpointError, match_keys, read_checkpoint
from viewer.inference.model import LoadedModel
from viewer.io import discover, load_series
from viewer.resources import resource_path

CHEXNET_LABELS = [
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
]  # fmt: skip


class ArnowengDenseNet121(nn.Module):
    """arnoweng/CheXNet's model: a torchvision DenseNet-121 under ``self.densenet121`` whose
    classifier is ``Sequential(Linear(1024, 14), Sigmoid())``."""

    def __init__(self, classes: int = 14):
        super().__init__()
        self.densenet121 = torchvision.models.densenet121(weights=None)
        self.densenet121.classifier = nn.Sequential(nn.Linear(1024, classes), nn.Sigmoid())

    def forward(self, x):
        return self.densenet121(x)


def pre_04_names(state: dict) -> dict:
    """The DenseNet key names of PyTorch < 0.4, as in CheXNet's released checkpoint."""
    out = {}
    for key, value in state.items():
        for old in ("norm1", "relu1", "conv1", "norm2", "relu2", "conv2"):
            if "denselayer" in key and f".{old}." in key:
                key = key.replace(f".{old}.", f".{old[:-1]}.{old[-1]}.")
        out[key] = value
    return out


def manifest(folder, weights: str, *, labels=CHEXNET_LABELS, key_map: str = "") -> str:
    path = folder / "manifest.toml"
    quoted = ", ".join(f'"{label}"' for label in labels)
    path.write_text(textwrap.dedent(f"""\
        name = "user model"
        task = "multilabel"
        labels = [{quoted}]

        [network]
        arch = "densenet121"
        weights = "{weights}"
        in_channels = 3
        {key_map}

        [input]
        size = [224, 224]
        mean = [0.485, 0.456, 0.406]
        std = [0.229, 0.224, 0.225]
        """))  # fmt: skip
    return str(path)


@pytest.fixture(scope="module")
def film():
    return load_series(discover([resource_path("samples", "dicom", "cxr_0002.dcm")]).series[0])


def agrees_with_the_users_model(loaded: LoadedModel, users: nn.Module, film, logits: bool = False) -> None:
    """The viewer's probabilities on the film equal the user's own model on the same input
    (passed through a sigmoid where the user's model ends in logits)."""
    x, _ = loaded.prepare(film)
    with torch.no_grad():
        out = users(x[None])
        theirs = (torch.sigmoid(out) if logits else out).numpy()[0]
    ours = loaded.predict(film).probabilities[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_arnoweng_chexnet_checkpoint(tmp_path, film):
    """``{"state_dict": ...}`` with DataParallel ``module.densenet121.`` keys, pre-0.4 names and a
    ``classifier.0`` head: loads with ``arch = "densenet121"`` and nothing else."""
    users = seeded(ArnowengDenseNet121())
    state = pre_04_names(nn.DataParallel(users).state_dict())
    assert "module.densenet121.features.denseblock1.denselayer1.norm.1.weight" in state
    torch.save({"epoch": 1, "arch": "densenet121", "state_dict": state}, tmp_path / "model.pth.tar")
    loaded = LoadedModel.from_manifest(manifest(tmp_path, "model.pth.tar"), device="cpu")
    renames = " ".join(loaded.checkpoint.renames)
    assert "prefix module.densenet121." in renames and "pre-0.4 DenseNet" in renames
    assert "Sequential head classifier.0.* -> classifier.*" in renames
    agrees_with_the_users_model(loaded, users, film)


def test_reproduce_chexnet_whole_pickled_model_without_a_suffix(tmp_path, film):
    """jrzech/reproduce-chexnet: ``torch.save({"model": model, "best_loss", "epoch", "LR"},
    "checkpoint")``, a whole torchvision DenseNet with a Sigmoid head, in a file with no suffix."""
    users = seeded(torchvision.models.densenet121(weights=None), seed=1)
    users.classifier = nn.Sequential(nn.Linear(1024, 14), nn.Sigmoid())
    seeded(users.classifier, seed=2)
    torch.save({"model": users, "best_loss": 0.17, "epoch": 8, "LR": 1e-4}, tmp_path / "checkpoint")
    checkpoint = read_checkpoint(tmp_path / "checkpoint")
    assert checkpoint.whole_model is not None and checkpoint.activation == "sigmoid"
    loaded = LoadedModel.from_manifest(manifest(tmp_path, "checkpoint"), device="cpu")
    agrees_with_the_users_model(loaded, users, film)


def test_manifest_key_map_covers_other_names(tmp_path, film):
    users = seeded(torchvision.models.densenet121(weights=None, num_classes=14), seed=3)
    state = {key.replace("features.", "trunk.", 1): value for key, value in users.state_dict().items()}
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(Exception, match=r"missing.*\[network\.key_map\]"):
        LoadedModel.from_manifest(manifest(tmp_path, "w.pt"), device="cpu")
    path = manifest(tmp_path, "w.pt", key_map='key_map = { "trunk." = "features." }')
    agrees_with_the_users_model(LoadedModel.from_manifest(path, device="cpu"), users, film, logits=True)


def test_prefix_matching_is_by_the_architectures_own_keys():
    expected = {"layer.weight": 0, "fc.weight": 0, "fc.bias": 0}
    state = {"backbone.encoder.layer.weight": 1, "head.fc.0.weight": 2, "head.fc.0.bias": 3}
    renamed, renames = match_keys(state, expected)
    assert renamed == {"layer.weight": 1, "fc.weight": 2, "fc.bias": 3}
    assert any("prefix backbone.encoder." in r for r in renames)
    # Two file keys for one name: the second is left as it is, to be reported as unexpected.
    renamed, _ = match_keys({"a.fc.weight": 1, "b.fc.weight": 2}, {"fc.weight": 0})
    assert renamed == {"fc.weight": 1, "b.fc.weight": 2}
    renamed, _ = match_keys({"module.fc.weight": 1, "fc.weight": 2}, {"fc.weight": 0})
    assert renamed == {"module.fc.weight": 1, "fc.weight": 2}


# --- malicious pickles ----------------------------------------------------------------------------


def _payloads(marker):
    """Objects whose unpickling would create ``marker``: each a different way in."""

    class System:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    class Exec:
        def __reduce__(self):
            return (builtins.exec, (f"open({str(marker)!r}, 'w').close()",))

    class Popen:
        def __reduce__(self):
            return (subprocess.Popen, (["touch", str(marker)],))

    class Eval:
        def __reduce__(self):
            return (builtins.eval, (f"open({str(marker)!r}, 'w')",))

    return {
        "os.system": System(),
        "builtins.exec": Exec(),
        "subprocess.Popen": Popen(),
        "builtins.eval": Eval(),
    }


def _containers(payload):
    module = nn.Linear(2, 2)
    module.hidden = payload  # inside a module's __dict__
    return {
        "bare": payload,
        "in a state dict": {"state_dict": {"weight": torch.zeros(2), "bias": payload}},
        "in a module": module,
    }


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_malicious_pickles_are_refused_with_no_side_effect(tmp_path, protocol):
    marker = tmp_path / "pwned"
    refused = 0
    for name, payload in _payloads(marker).items():
        for where, obj in _containers(payload).items():
            for writer in ("torch.save", "pickle.dump"):
                path = tmp_path / f"{name}-{where}-{writer}.pt".replace(" ", "_")
                if writer == "torch.save":
                    torch.save(obj, path, pickle_protocol=protocol)
                else:
                    with open(path, "wb") as f:
                        pickle.dump(obj, f, protocol=protocol)
                with pytest.raises(CheckpointError) as error:
                    read_checkpoint(path)
                message = str(error.value)
                assert "\x1b" not in message
                if writer == "torch.save" and protocol >= 2:  # the refused global is named
                    assert name.split(".")[-1] in message or "posix.system" in message, message
                assert not marker.exists(), f"{name} {where} {writer} ran"
                refused += 1
    assert refused == 4 * 3 * 2


class UsersOwnNet(nn.Module):
    """A network class of the user's own code: importing it would run that code."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)


def test_a_users_own_class_is_refused_with_the_way_to_resave(tmp_path):
    torch.save(UsersOwnNet(), tmp_path / "own.pt")
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(tmp_path / "own.pt")
    assert "UsersOwnNet" in str(error.value) and "torch.save(model.state_dict()" in str(error.value)


def test_a_torch_function_is_not_a_network_class(tmp_path):
    """Allowed packages are no blank cheque: only their nn.Module classes may be named."""

    class Hub:
        def __reduce__(self):
            return (torch.hub.load, ("someone/repo", "model"))

    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Hub()}, tmp_path / "hub.pt")
    with pytest.raises(
        CheckpointError, match=r"torch\.hub\.load, a function or class that is not a network layer"
    ):
        read_checkpoint(tmp_path / "hub.pt")
