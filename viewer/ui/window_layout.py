"""Where the main window and its docks go: a dock per panel (scrolling where a column is shorter
than its content), the saved geometry and dock layout restored, and a first size that fits the
screen."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDockWidget, QFrame, QMainWindow, QScrollArea, QWidget

from viewer.ui.wheel_guard import guard_wheel


def make_dock(
    window: QMainWindow,
    title: str,
    widget: QWidget,
    area: Qt.DockWidgetArea,
    *,
    scroll: bool = False,
    name: str = "",
) -> QDockWidget:
    dock = QDockWidget(title, window)
    dock.setObjectName(f"dock_{name or title.split()[0].lower()}")  # saved layouts find it by it
    if scroll:  # a column of panels shorter than their content scrolls instead of overlapping
        area_widget = QScrollArea()
        area_widget.setWidgetResizable(True)
        area_widget.setFrameShape(QFrame.Shape.NoFrame)
        area_widget.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        bar = area_widget.verticalScrollBar().sizeHint().width()
        area_widget.setMinimumWidth(widget.minimumSizeHint().width() + bar)
        area_widget.setWidget(widget)
        guard_wheel(area_widget)  # the wheel scrolls the column, not a slider it passes over
        widget = area_widget
    dock.setWidget(widget)
    window.addDockWidget(area, dock)
    return dock


def restore_layout(window: QMainWindow, docks: dict[str, QDockWidget]) -> None:
    """The geometry and dock layout saved at the last close, or a first layout."""
    settings = window.settings
    geometry = settings.value("window/geometry")
    if geometry is None or not window.restoreGeometry(geometry):
        first_size(window)
    layout = settings.value("window/state")
    if layout is None or not window.restoreState(layout):
        # First run: the model panel (predictions, methods, Run) gets two thirds of the column.
        window.resizeDocks([docks["model"], docks["layers"]], [640, 320], Qt.Orientation.Vertical)


def save_layout(window: QMainWindow) -> None:
    window.settings.setValue("window/geometry", window.saveGeometry())
    window.settings.setValue("window/state", window.saveState())


def first_size(window: QMainWindow) -> None:
    """1400 x 900 where the screen has room; on a smaller screen (1280 x 800 laptops) 95 % of its
    free area, so no edge is off-screen."""
    screen = window.screen() or QApplication.primaryScreen()
    free = screen.availableGeometry() if screen is not None else None
    if free is None:
        window.resize(1400, 900)
        return
    place(window, min(1400, round(free.width() * 0.95)), min(900, round(free.height() * 0.95)))


def place(window: QMainWindow, width: int, height: int) -> None:
    """Size the window and centre it on its screen's free area (never above or left of it)."""
    window.resize(width, height)
    screen = window.screen() or QApplication.primaryScreen()
    if screen is not None:
        free = screen.availableGeometry()
        x = free.x() + max(0, (free.width() - width) // 2)
        y = free.y() + max(0, (free.height() - height) // 2)
        window.move(x, y)
