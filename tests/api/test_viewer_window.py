"""``viewer.Viewer`` from a script: the real main window (pytest-qt, offscreen) on a network held in
memory, checked against the network itself, pytorch-grad-cam and Captum on the same input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import GuidedBackprop
from PySide6.QtCore import QSettings
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import viewer
from tests.api.networks import ChestNetTwin, chest_net, smooth_input

pytestmark = pytest.mark.gui
LABELS = ["normal", "pneumonia", "covid", "other"]


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def opened(qtbot, settings):
    """A Viewer made as a script makes it: a custom module mid-training, a numpy input."""
    net = chest_net().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = smooth_input(seed=3).numpy()  # (1, 3, 48, 40), what the user's model(x) takes
    window = viewer.Viewer(net, images=x, labels=LABELS, settings=settings)
    qtbot.addWidget(window.window)
    window.wait(120)
    yield window, net, torch.from_numpy(x), before
    window.close()


def minmax(a) -> np.ndarray:
    a = np.asarray(a, np.float64)
    return (a - a.min()) / max(a.max() - a.min(), 1e-12)


def peak_diff(got, expected) -> float:
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    assert got.shape == expected.shape and np.abs(expected).max() > 0
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def test_prediction_is_the_networks_own(opened):
    window, _, x, _ = opened
    assert window.model == "ChestNet (in memory)"
    panel = window.window.model_panel.models
    assert "ChestNet (in memory)" in [panel.itemText(i) for i in range(panel.count())]
    with torch.no_grad():
        expected = torch.softmax(chest_net().eval()(x), dim=1)[0]
    assert window.probabilities == pytest.approx(dict(zip(LABELS, expected.tolist(), strict=True)), abs=1e-6)
    assert window.state.target == LABELS[int(expected.argmax())]
    assert not window.session.reports.errors


def test_methods_run_in_the_window_equal_the_peers(opened):
    window, _, x, _ = opened
    window.run_methods(["gradcam", "guided-backprop"])
    window.wait(300)
    assert [layer.method for layer in window.state.layers] == ["gradcam", "guided-backprop"]
    target = LABELS.index(window.state.target)
    twin = ChestNetTwin(chest_net()).eval()
    with GradCAM(model=twin, target_layers=[twin.down]) as cam:
        expected = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]
    gradcam = window.state.layer("gradcam").maps[0]
    assert peak_diff(minmax(gradcam.grid[0]), expected) <= 2e-3
    guided = GuidedBackprop(twin).attribute(x.clone(), target=target).detach()[0].abs().amax(dim=0)
    layer = window.state.layer("guided-backprop").maps[0]
    assert peak_diff(layer.grid[0], guided / guided.max()) <= 1e-4
    assert not window.session.reports.errors


def test_the_users_module_is_unchanged(opened):
    window, net, _, before = opened
    window.run_methods(["gradcam", "guided-backprop"])
    window.wait(300)
    assert net.training and all(m.training for m in net.modules())
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics included
    assert all(p.grad is None and p.requires_grad for p in net.parameters())
    assert not any(m._forward_hooks or m._backward_hooks or m._forward_pre_hooks for m in net.modules())


def test_add_explanation_shows_the_notebooks_maps(opened):
    window, net, x, _ = opened
    expl = viewer.explain(net, x, ["gradient", "gradcam++"], labels=LABELS, target="covid")
    window.add_explanation(expl)
    window.wait(120)
    assert window.state.target == "covid"
    for method in ("gradient", "gradcam++"):
        np.testing.assert_array_equal(window.state.layer(method).maps[0].array[0], expl[method])
    assert window.session.cache.missing(id(window.state.image), 0, window.model, "covid", ["gradient"]) == []


def test_the_in_memory_model_never_reaches_the_settings(opened, settings):
    window, _, _, _ = opened
    settings.setValue("models/current", "cxr_resnet18")  # what the desktop viewer used last
    window.close()
    settings.sync()
    text = Path(settings.fileName()).read_text()
    assert "in memory" not in text and "in-memory" not in text
    assert settings.value("models/current") == "cxr_resnet18"


def test_model_card_and_doctor_say_it_came_from_memory(opened, qtbot):
    from viewer.ui.model_card import card_text
    from viewer.ui.model_doctor import ModelCheckDialog

    window, _, _, _ = opened
    assert "came from memory" in card_text(window.session.model.manifest())
    dialog = ModelCheckDialog(window.window, window.window.runner, window.session.model.manifest_path, None)
    qtbot.addWidget(dialog)
    assert dialog.job is None and "no file to check" in dialog.status.text()


def test_a_network_before_its_first_image_takes_that_images_size(qtbot, settings):
    net = chest_net(in_channels=1)
    window = viewer.Viewer(net, labels=LABELS, settings=settings)
    qtbot.addWidget(window.window)
    film = np.linspace(0, 255, 40 * 32, dtype=np.float32).reshape(40, 32)
    window.open(film)  # (H, W): the input of a one-channel network, as viewer.explain reads it
    window.wait(120)
    assert window.model == "ChestNet (in memory)"
    assert window.session.model.store.get(window.session.model.manifest_path).manifest.input.size == (40, 32)
    assert set(window.probabilities) == set(LABELS)
    window.close()
