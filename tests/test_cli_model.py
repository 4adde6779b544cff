"""``saliency-viewer model check``: the model doctor on the bundled models and on checkpoints as
researchers save them (built here with seeded weights)."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from torch import nn

from tests.inference.layouts import seeded, write_manifest
from tests.inference.test_checkpoint_layouts import CHEXNET_LABELS, ArnowengDenseNet121, pre_04_names
from viewer.cli import main
from viewer.resources import resource_path

LABELS = ["a", "b", "c"]


def check(capsys, *args) -> tuple[int, str]:
    code = main(["model", "check", *map(str, args)])
    return code, capsys.readouterr().out


def test_bundled_model_on_its_sample(capsys):
    code, out = check(capsys, "cxr_resnet18")
    assert code == 0, out
    expected = (
        "arch resnet18 (torchvision), 11.",
        "sigmoid applied by the viewer (task)",
        "256 x 256 (letterbox)",
        "layer4 (network.target_layer): 8 x 8 grid",
        "image cxr_0001.dcm 1024 x 1024",
        "ms on cpu",
        "OK: the viewer can use this model.",
    )
    for part in expected:
        assert part in out
    assert out.count("  * layer4 ") == 1


def test_json_report_has_every_label(capsys):
    code, out = check(capsys, "cxr_resnet18", resource_path("samples", "dicom", "cxr_0002.dcm"), "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["error"] is None
    assert set(report["probabilities"]) == {
        "nodule",
        "consolidation",
        "effusion",
        "cardiomegaly",
        "pneumothorax",
    }
    assert report["seconds"] > 0 and "Target layer" in report["sections"]


def test_synthetic_model_on_a_real_radiograph_warns(capsys, testdata):
    code, out = check(capsys, "cxr_resnet18", testdata("RG1_UNCR.dcm"))
    assert code == 0
    assert "trained on synthetic phantoms only" in out


def test_arnoweng_checkpoint_lists_its_renames(tmp_path, capsys):
    users = seeded(ArnowengDenseNet121())
    torch.save({"state_dict": pre_04_names(nn.DataParallel(users).state_dict())}, tmp_path / "m.pth.tar")
    path = write_manifest(tmp_path, "densenet121", "m.pth.tar", labels=CHEXNET_LABELS, size=(224, 224))
    code, out = check(capsys, path)
    assert code == 0, out
    assert "rename: prefix module.densenet121." in out and "rename: pre-0.4 DenseNet names" in out
    assert "rename: Sequential head classifier.0.* -> classifier.*" in out


def test_labels_that_do_not_fit_the_head_are_named(tmp_path, capsys):
    torch.save(seeded(torchvision.models.resnet18(num_classes=14)).state_dict(), tmp_path / "w.pt")
    code, out = check(capsys, write_manifest(tmp_path, "resnet18", "w.pt", labels=LABELS))
    assert code == 1
    assert "the manifest lists 3 labels but the file's head (fc.weight) has 14 outputs" in out
    assert "Traceback" not in out


def test_whole_model_saved_in_train_mode_and_untrained_batchnorm(tmp_path, capsys):
    users = torchvision.models.resnet18(num_classes=3).train()  # initial BatchNorm statistics
    torch.save(users, tmp_path / "model.pt")
    code, out = check(capsys, write_manifest(tmp_path, "resnet18", "model.pt", labels=LABELS))
    assert code == 0, out
    assert "the saved model was in train mode" in out
    assert "BatchNorm layer(s) hold their initial statistics" in out
    assert "a whole pickled ResNet" in out


def test_softmax_head_under_a_multilabel_task_is_flagged(tmp_path, capsys):
    users = seeded(torchvision.models.resnet18(num_classes=3))
    users.fc = nn.Sequential(nn.Linear(512, 3), nn.Softmax(dim=1))
    torch.save({"model": users, "epoch": 2}, tmp_path / "checkpoint")
    code, out = check(capsys, write_manifest(tmp_path, "resnet18", "checkpoint", labels=LABELS))
    assert code == 0
    assert "softmax applied by the viewer (the saved model's head)" in out
    assert 'set task = "multiclass" to agree' in out


def test_input_normalisation_far_off_is_flagged(tmp_path, capsys):
    torch.save(seeded(torchvision.models.resnet18(num_classes=3)).state_dict(), tmp_path / "w.pt")
    path = write_manifest(tmp_path, "resnet18", "w.pt", labels=LABELS)
    path.write_text(path.read_text().replace("std = [0.25]", "std = [0.001]"))
    code, out = check(capsys, path)
    assert code == 0 and "input.mean/std may not be the normalisation" in out


@pytest.mark.parametrize("bad", ["no-such-model", "manifest-typo"])
def test_bad_model_exits_1_with_a_reason(tmp_path, capsys, bad):
    target = bad
    if bad == "manifest-typo":
        torch.save({}, tmp_path / "w.pt")
        target = write_manifest(tmp_path, "resnet18", "w.pt", labels=LABELS)
        target.write_text(target.read_text().replace("in_channels", "in_chanels"))
    code, out = check(capsys, target)
    assert code == 1 and "ERROR:" in out and "Traceback" not in out


def test_a_weights_file_over_the_size_limit_is_flagged(tmp_path, capsys, monkeypatch):
    from viewer.inference import doctor

    torch.save(seeded(torchvision.models.resnet18(num_classes=3)).state_dict(), tmp_path / "w.pt")
    monkeypatch.setattr(doctor, "_LARGE_FILE", 1 << 20)  # the limit is 1 GiB: 1 MiB stands in for it
    code, out = check(capsys, write_manifest(tmp_path, "resnet18", "w.pt", labels=LABELS))
    assert code == 0
    assert "loading takes long and needs as much memory" in out
