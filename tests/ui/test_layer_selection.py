"""A method that finishes while the user styles another layer must not take the selection: the
colour chosen in the list lands on the layer it was chosen for."""

from __future__ import annotations

from PySide6.QtCore import Qt

from tests.ui.helpers import CHEST, open_and_wait


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


def test_the_sliders_stay_put_as_the_description_changes_length(qtbot, window):
    """Going from a layer with a two-line description to one with a long one (and back) must not
    move the threshold slider: the user reaches for it where it was."""
    open_and_wait(qtbot, window, [CHEST])
    with qtbot.waitSignal(window.maps_shown, timeout=300_000):
        window.run_methods(["gradient", "deconvnet"])
    panel = window.layer_panel
    qtbot.waitUntil(panel.isVisible)
    # A description as long as a sampled method's (its caveat, its samples, whether it settled).
    long = next(layer for layer in window.state.layers if layer.method == "deconvnet")
    for smap in long.maps.values():
        smap.notes += [f"note {i}: the kind of sentence a sampled method says of its map" for i in range(4)]

    def slider_at(row: int):
        panel.list.setCurrentRow(row)
        qtbot.wait(50)  # the layout settles
        height = panel.info.heightForWidth(panel.info.width())
        return height, panel.threshold.mapToGlobal(panel.threshold.rect().topLeft())

    heights, places = zip(*(slider_at(row) for row in (0, 1, 0, 1)), strict=True)
    assert heights[0] != heights[1], "the two descriptions should differ in length"
    assert len(set(places)) == 1, (places, heights)
