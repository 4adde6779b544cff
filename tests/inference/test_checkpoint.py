"""Loading the checkpoints people have, safely, with clear errors when they do not fit."""

import collections

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from viewer.inference.checkpoint import CheckpointError, load_weights, read_state_dict


def small_model():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=3)


def same(a, b):
    return all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize(
    ("name", "wrap"),
    [
        ("raw.pt", lambda s: s),
        ("wrapped.pth", lambda s: {"state_dict": s, "epoch": 3}),
        ("lightning.ckpt", lambda s: {"state_dict": {"model." + k: v for k, v in s.items()}}),
        ("model.pth.tar", lambda s: {"model": s, "optimizer": {}}),
        ("dataparallel.pth", lambda s: collections.OrderedDict(("module." + k, v) for k, v in s.items())),
    ],
)
def test_checkpoint_flavours_load(tmp_path, name, wrap):
    source = small_model()
    torch.save(wrap(source.state_dict()), tmp_path / name)
    target = torchvision.models.resnet18(num_classes=3)
    load_weights(target, tmp_path / name)
    assert same(source, target)


def test_safetensors(tmp_path):
    source = small_model()
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    target = torchvision.models.resnet18(num_classes=3)
    load_weights(target, tmp_path / "w.safetensors")
    assert same(source, target)


def test_old_densenet_key_names(tmp_path):
    torch.manual_seed(0)
    source = torchvision.models.densenet121(num_classes=14)
    # Pre-0.4 torchvision (and CheXNet checkpoints) named them norm.1, conv.2, ...
    old = {
        k.replace(".norm1.", ".norm.1.")
        .replace(".conv1.", ".conv.1.")
        .replace(".norm2.", ".norm.2.")
        .replace(".conv2.", ".conv.2."): v
        for k, v in source.state_dict().items()
    }
    assert any(".norm.1." in k for k in old)
    torch.save({"state_dict": {"module." + k: v for k, v in old.items()}}, tmp_path / "chexnet.pth.tar")
    target = torchvision.models.densenet121(num_classes=14)
    load_weights(target, tmp_path / "chexnet.pth.tar")
    assert same(source, target)


def test_mismatch_lists_keys_and_shapes(tmp_path):
    torch.save(torchvision.models.resnet18(num_classes=5).state_dict(), tmp_path / "five.pt")
    with pytest.raises(CheckpointError) as error:
        load_weights(torchvision.models.resnet18(num_classes=3), tmp_path / "five.pt")
    message = str(error.value)
    assert "wrong shape" in message
    assert "fc.weight: file (5, 512) vs model (3, 512)" in message

    partial = {k: v for k, v in small_model().state_dict().items() if not k.startswith("layer4")}
    partial["extra.weight"] = torch.zeros(1)
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError) as error:
        load_weights(small_model(), tmp_path / "partial.pt")
    assert "missing: layer4." in str(error.value)
    assert "1 unexpected: extra.weight" in str(error.value)


class Payload:
    """A class inside a pickle: loading it would need to run code."""


def test_pickled_code_is_refused(tmp_path):
    torch.save({"state_dict": small_model().state_dict(), "extra": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"test_checkpoint\.Payload, which is not a network class"):
        read_state_dict(tmp_path / "evil.pt")
    torch.save(small_model(), tmp_path / "whole_model.pt")  # a pickled torchvision network: allowed
    assert read_state_dict(tmp_path / "whole_model.pt").keys() == small_model().state_dict().keys()


def test_a_whole_model_of_another_architecture_is_named_in_the_mismatch(tmp_path):
    torch.save({"model": torchvision.models.densenet121(num_classes=3)}, tmp_path / "densenet.pt")
    with pytest.raises(CheckpointError) as error:
        load_weights(torchvision.models.resnet18(num_classes=3), tmp_path / "densenet.pt")
    assert "pickled torchvision.models.densenet.DenseNet and network.arch builds a" in str(error.value)
    # A wrapper around the same architecture is no mismatch: its prefix is stripped.
    wrapped = torch.nn.Sequential(small_model(), torch.nn.Sigmoid())
    torch.save(wrapped, tmp_path / "wrapped.pt")
    checkpoint = load_weights(torchvision.models.resnet18(num_classes=3), tmp_path / "wrapped.pt")
    assert checkpoint.activation == "sigmoid" and checkpoint.renames == ["prefix 0. (122 keys)"]
