"""``model init``: a manifest from what a weights file shows (item 5 of issue 42), for each kind
of file the viewer reads, and the error naming what was tried when nothing matches."""

from __future__ import annotations

import tomllib

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from tests.inference.layouts import seeded
from tests.inference.user_net import CustomNet
from viewer.cli import main as cli_main
from viewer.inference.model_init import InitError, infer_model

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(autouse=True)
def trust_store(tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_VIEWER_TRUST", str(tmp_path / "trusted.json"))


def init(path, *extra) -> tuple[int, dict]:
    code = cli_main(["model", "init", str(path), "--labels", "a,b,c", "--device", "cpu", *extra])
    manifest = path.parent / "manifest.toml"
    return code, tomllib.loads(manifest.read_text()) if manifest.exists() else {}


@pytest.mark.parametrize(
    ("arch", "suffix", "channels"),
    [("resnet18", ".pt", 3), ("densenet121", ".safetensors", 1), ("resnet18", ".pth", 1)],
)
def test_a_state_dict_is_matched_to_its_architecture(tmp_path, capsys, arch, suffix, channels):
    network = torchvision.models.get_model(arch, weights=None, num_classes=3)
    if channels != 3:
        from viewer.inference.architectures import set_input_channels

        set_input_channels(network, channels)
    state = {f"module.{k}": v for k, v in network.state_dict().items()}  # as DataParallel saves it
    path = tmp_path / f"weights{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    code, manifest = init(path)
    assert code == 0, capsys.readouterr().out
    assert manifest["network"]["arch"] == arch and manifest["network"]["in_channels"] == channels
    assert manifest["labels"] == ["a", "b", "c"] and manifest["input"]["size"] == [224, 224]
    assert "One forward pass" in capsys.readouterr().out  # the doctor's report follows


def test_a_pt2_program_gives_its_input_and_output(tmp_path, capsys):
    program = torch.export.export(
        nn.Sequential(seeded(CustomNet(in_channels=1)), nn.Softmax(dim=-1)).eval(),
        (torch.randn(2, 1, 96, 80),),
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    torch.export.save(program, str(tmp_path / "net.pt2"))
    found = infer_model(tmp_path / "net.pt2")
    assert (found.arch, found.in_channels, found.size, found.outputs) == ("pt2", 1, (96, 80), 3)
    assert (found.output, found.task) == ("probabilities", "multiclass")
    code, manifest = init(tmp_path / "net.pt2")
    assert code == 0, capsys.readouterr().out
    assert manifest["input"]["size"] == [96, 80] and manifest["task"] == "multiclass"


def test_torchscript_and_onnx(tmp_path, capsys):
    users = nn.Sequential(
        seeded(torchvision.models.resnet18(weights=None, num_classes=3)), nn.Sigmoid()
    ).eval()
    (tmp_path / "ts").mkdir()
    torch.jit.trace(users, torch.zeros(1, 3, 64, 64)).save(str(tmp_path / "ts" / "model.pt"))
    found = infer_model(tmp_path / "ts" / "model.pt")
    assert (found.arch, found.in_channels, found.outputs, found.output) == (
        "torchscript",
        3,
        3,
        "probabilities",
    )
    code, manifest = init(tmp_path / "ts" / "model.pt")
    assert code == 0, capsys.readouterr().out
    (tmp_path / "onnx").mkdir()
    torch.onnx.export(
        users, torch.zeros(1, 3, 128, 112), str(tmp_path / "onnx" / "m.onnx"),
        input_names=["x"], dynamic_axes={"x": {0: "n"}}, dynamo=False,
    )  # fmt: skip
    found = infer_model(tmp_path / "onnx" / "m.onnx")
    assert (found.arch, found.in_channels, found.size, found.outputs) == ("onnx", 3, (128, 112), 3)
    assert found.output == "probabilities"
    code, manifest = init(tmp_path / "onnx" / "m.onnx")
    assert code == 0, capsys.readouterr().out and manifest["network"]["arch"] == "onnx"


def test_an_existing_manifest_is_kept_without_force(tmp_path, capsys):
    torch.save(torchvision.models.resnet18(weights=None, num_classes=3).state_dict(), tmp_path / "w.pt")
    (tmp_path / "manifest.toml").write_text("# mine\n")
    assert cli_main(["model", "init", str(tmp_path / "w.pt"), "--labels", "a,b,c"]) == 1
    assert "--force" in capsys.readouterr().err and (tmp_path / "manifest.toml").read_text() == "# mine\n"
    code, manifest = init(tmp_path / "w.pt", "--force")
    assert code == 0 and manifest["network"]["arch"] == "resnet18"


def test_labels_are_asked_for_and_counted(tmp_path, capsys, monkeypatch):
    torch.save(torchvision.models.resnet18(weights=None, num_classes=3).state_dict(), tmp_path / "w.pt")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert cli_main(["model", "init", str(tmp_path / "w.pt")]) == 1
    assert "pass --labels a,b,c (3 names" in capsys.readouterr().err
    assert cli_main(["model", "init", str(tmp_path / "w.pt"), "--labels", "a,b"]) == 1
    assert "3 outputs but 2 labels" in capsys.readouterr().err
    assert not (tmp_path / "manifest.toml").exists()


def test_an_unknown_state_dict_names_what_was_tried(tmp_path):
    torch.save(seeded(CustomNet()).state_dict(), tmp_path / "w.pt")
    with pytest.raises(
        InitError, match=r"matches none of the architectures tried: resnet18, resnet34.*densenet121"
    ):
        infer_model(tmp_path / "w.pt")
