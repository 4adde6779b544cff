"""Add model... on a weights file in the real window: the file is read in the background, the
dialog asks for the labels (saying how many), a wrong count is refused in place, and accepting
writes manifest.toml beside the file, adds the model, uses it and opens the doctor's report."""

from __future__ import annotations

import tomllib

import torchvision
from safetensors.torch import save_file

from tests.ui.helpers import CHEST, open_and_wait


def test_a_weights_file_becomes_a_model_with_the_labels_asked_for(qtbot, window, tmp_path):
    open_and_wait(qtbot, window, [CHEST])
    network = torchvision.models.resnet18(weights=None, num_classes=3)
    weights = tmp_path / "my_chest_net.safetensors"
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, weights)
    window.models.add_file(weights)
    dialog = window.models.setup
    qtbot.waitUntil(lambda: dialog.found is not None, timeout=120_000)
    assert dialog.what.text().startswith("resnet18, 3 channel(s)") and "3 outputs" in dialog.what.text()
    assert "(3, in output order)" in dialog.status.text()
    dialog.labels.setText("effusion, nodule")  # one short: refused, the dialog stays
    dialog.accept()
    assert dialog.isVisible() and "3 outputs but 2 labels" in dialog.status.text()
    assert not (tmp_path / "manifest.toml").exists()
    dialog.labels.setText("effusion, nodule, pneumothorax")
    dialog.name.setText("My chest net")
    dialog.accept()
    manifest = tomllib.loads((tmp_path / "manifest.toml").read_text())
    assert manifest["labels"] == ["effusion", "nodule", "pneumothorax"]
    assert manifest["network"]["arch"] == "resnet18" and manifest["network"]["weights"] == weights.name
    assert window.session.state.model == "My chest net" == window.model_panel.models.currentText()
    qtbot.waitUntil(lambda: window.session.model.prediction is not None, timeout=120_000)
    assert window.session.model.prediction.labels == ("effusion", "nodule", "pneumothorax")
    check = window.models.doctor
    qtbot.waitUntil(lambda: check.report is not None, timeout=120_000)
    assert check.report.ok, check.report.text()


def test_a_file_that_is_no_model_is_named_with_the_reason(qtbot, window, tmp_path):
    junk = tmp_path / "notes.pt"
    junk.write_bytes(b"not a model at all")
    window.models.add_file(junk)
    dialog = window.models.setup
    qtbot.waitUntil(lambda: dialog.status.text().startswith("Cannot add notes.pt"), timeout=60_000)
    assert "tried:" in dialog.status.text()
    assert not dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled()
