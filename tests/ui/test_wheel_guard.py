"""The wheel over a scrolling dock scrolls it; a slider or list it passes over keeps its value
until the user clicks it (seen in the real window: scrolling the Layers dock set a layer's
opacity to 0 and its colours to another map)."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QComboBox, QScrollArea, QSlider

from tests.ui.helpers import CHEST, FAST_METHODS, open_and_wait, run_and_wait


def wheel_down(widget, notches: int = 3) -> None:
    pos = QPointF(widget.rect().center())
    for _ in range(notches):
        event = QWheelEvent(
            pos, QPointF(widget.mapToGlobal(pos.toPoint())), QPoint(), QPoint(0, -120),
            Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False,
        )  # fmt: skip
        QApplication.sendEvent(widget, event)


def test_the_wheel_scrolls_the_layers_dock_not_its_controls(qtbot, window):
    open_and_wait(qtbot, window, [CHEST])
    run_and_wait(qtbot, window, FAST_METHODS[:1])
    window.resize(1400, 520)  # a short column: the Layers dock scrolls
    qtbot.wait(50)
    panel = window.layer_panel
    area = window.docks["layers"].widget()
    assert isinstance(area, QScrollArea)
    bar = area.verticalScrollBar()
    assert bar.maximum() > 0, "degenerate case: the dock does not scroll"
    slider = panel.opacity.findChild(QSlider)
    opacity, colours = panel.opacity.value(), panel.colormap.currentText()

    bar.setValue(0)
    wheel_down(slider)
    wheel_down(panel.colormap)
    assert panel.opacity.value() == opacity and panel.colormap.currentText() == colours
    assert bar.value() > 0  # the dock scrolled instead

    slider.setFocus(Qt.FocusReason.MouseFocusReason)  # clicked: now the wheel is the slider's
    qtbot.waitUntil(slider.hasFocus)
    wheel_down(slider)
    assert panel.opacity.value() < opacity


def test_the_model_list_keeps_its_model_under_a_passing_wheel(qtbot, window):
    open_and_wait(qtbot, window, [CHEST])
    models = window.model_panel.models
    assert isinstance(models, QComboBox) and models.count() > 1
    chosen = models.currentText()
    wheel_down(models)
    assert models.currentText() == chosen
    assert models.focusPolicy() == Qt.FocusPolicy.StrongFocus
