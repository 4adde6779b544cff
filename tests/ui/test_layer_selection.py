"""A method that finishes while the user styles another layer must not take the selection: the
colour chosen in the list lands on the layer it was chosen for."""

from __future__ import annotations

from PySide6.QtCore import Qt

from tests.ui.conftest import CHEST, open_and_wait


def test_a_finishing_method_does_not_steal_the_layer_being_styled(qtbot, window):
    open_and_wait(qtbot, window, [CHEST])
    first = []
    window.state.layers.events.inserted.connect(lambda _i, layer: first.append(layer.method))
    with qtbot.waitSignal(window.maps_shown, timeout=300_000):
        window.run_methods(["gradcam", "guided-backprop", "deconvnet", "gradient"])
        qtbot.waitUntil(lambda: len(first) >= 1, timeout=120_000)
        assert len(first) < 4, "the run finished before the user could act; use slower methods"
        # The user opens the colour list of the first layer to come (a press, as a click does).
        panel = window.layer_panel
        panel.list.setCurrentRow(0)
        qtbot.mousePress(panel.colormap, Qt.MouseButton.LeftButton)
        qtbot.mouseRelease(panel.colormap, Qt.MouseButton.LeftButton)
        panel.colormap.hidePopup()
    assert len(window.state.layers) == 4
    assert window.state.active_layer == first[0]  # the later maps did not take the selection
    window.layer_panel.colormap.setCurrentText("inferno")
    styled = {layer.method: layer.colormap for layer in window.state.layers}
    assert styled[first[0]] == "inferno"
    assert all(colormap != "inferno" for method, colormap in styled.items() if method != first[0])
    # A new run shows its newest maps again.
    with qtbot.waitSignal(window.maps_shown, timeout=300_000):
        window.run_methods(["gradcam++"])
    assert window.state.active_layer == "gradcam++"
