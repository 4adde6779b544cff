"""A mouse wheel turned over a scrolling dock scrolls the dock, not the control under the pointer.

Qt gives the wheel to whatever widget is under the pointer: scrolling down the Layers dock set a
layer's opacity to 0 and its colours to another map as the pointer passed over them, and over the
model list it would choose another model (and predict again). A combo box, slider or spin box in
a dock's scroll area now takes the wheel only once it has the keyboard focus (a click, or Tab);
until then the wheel scrolls the dock, as in most editors' settings panes.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractSlider, QAbstractSpinBox, QApplication, QComboBox, QScrollArea, QWidget

VALUE_CONTROLS = (QComboBox, QAbstractSlider, QAbstractSpinBox)


class WheelGuard(QObject):
    """Sends a wheel event over an unfocused value control to the scroll area holding it."""

    def __init__(self, area: QScrollArea) -> None:
        super().__init__(area)
        self.area = area

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() != QEvent.Type.Wheel or not isinstance(watched, QWidget) or watched.hasFocus():
            return False
        QApplication.sendEvent(self.area.verticalScrollBar(), event)
        return True


def guard_wheel(area: QScrollArea) -> None:
    """Guard every value control inside ``area`` (call once its widget is set); each is given
    focus by a click or Tab, not by the wheel."""
    guard = WheelGuard(area)
    for control in area.widget().findChildren(QWidget):
        if isinstance(control, VALUE_CONTROLS):
            control.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            control.installEventFilter(guard)


__all__ = ["VALUE_CONTROLS", "WheelGuard", "guard_wheel"]
