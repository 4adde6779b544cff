"""The panel's "Run on open" box drives the session's explanation part: ticked, opening an image
computes the ticked methods with no other click (the ``--run`` launch option ticks the same box)."""

from __future__ import annotations

from tests.ui.helpers import CHEST


def test_ticking_run_on_open_computes_the_ticked_methods_when_an_image_opens(qtbot, window):
    panel = window.model_panel
    panel.set_checked_methods(["gradcam"])
    panel.run_on_open.setChecked(True)
    assert window.session.explanation.run_on_open
    with qtbot.waitSignal(window.maps_shown, timeout=300_000):
        window.open_paths([str(CHEST)])
    assert [layer.method for layer in window.state.layers] == ["gradcam"]
    panel.run_on_open.setChecked(False)
    assert not window.session.explanation.run_on_open
