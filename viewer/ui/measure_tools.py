"""Measuring in the single view: length, angle and rectangle, ellipse and freehand regions (with
the statistics of the pixels inside), drawn with the left button, listed in the Measurements
dock, shown on their slice with their values, saved as and loaded from a DICOM SR (TID 1500).

A length, a rectangle or an ellipse is one drag; a freehand region is one drag along its outline;
an angle is a drag along its first arm, ending on the vertex, then a click on the end of the
second arm. The data and the values are the Qt-free :class:`MeasurementBook`'s; this module only
turns gestures into measurements and draws them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QPainterPath
from PySide6.QtWidgets import (
    QFileDialog,
    QGraphicsPathItem,
    QListWidget,
    QMainWindow,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from viewer.io.measurements import Measured, Measurement, MeasurementError
from viewer.state.measurement_book import MeasurementBook
from viewer.state.viewer_state import ViewerState
from viewer.ui.actions import check_only
from viewer.ui.canvas import ImageViewBox, shape_path
from viewer.ui.layer_items import cosmetic_pen

# Tool id, menu text, shortcut, and the measurement kind it makes.
TOOLS = (
    ("length", "Length", "D", "length"),
    ("angle", "Angle", "G", "angle"),
    ("roi-rectangle", "Rectangle region", "Alt+R", "rectangle"),
    ("roi-ellipse", "Ellipse region", "Alt+E", "ellipse"),
    ("roi-freehand", "Freehand region", "Alt+F", "polygon"),
)
KIND_OF = {tool: kind for tool, _text, _key, kind in TOOLS}
COLOUR = "#ffeb3b"
SR_FILTER = "DICOM SR (*.dcm);;All files (*)"


def describe(measured: Measured) -> str:
    m = measured.measurement
    label = f" '{m.label}'" if m.label else ""
    return f"{m.kind.capitalize()}{label}, slice {m.frame + 1}: {measured.text()}"


class MeasurementItems:
    """The measurements of the slice on screen as graphics items in the canvas' view box."""

    def __init__(self, view: ImageViewBox, book: MeasurementBook, state: ViewerState) -> None:
        self.view, self.book, self.state = view, book, state
        self.items: list = []
        book.changed.connect(self.refresh)
        state.events.frame.connect(lambda *_: self.refresh())

    def refresh(self) -> None:
        for item in self.items:
            self.view.removeItem(item)
        self.items = []
        for measured in self.book.on_frame(self.state.frame):
            m = measured.measurement
            tool = next(t for t, _x, _k, kind in TOOLS if kind == m.kind)
            outline = QGraphicsPathItem(shape_path(tool, list(m.points)))
            outline.setPen(cosmetic_pen(COLOUR, 1.6))
            outline.setZValue(90)
            text = pg.TextItem(measured.text(), color=COLOUR, anchor=(0, 1))
            text.setPos(*max(m.points, key=lambda p: -p[1]))  # by the topmost point
            text.setZValue(91)
            for item in (outline, text):
                self.view.addItem(item)
                self.items.append(item)


class MeasureTools:
    """The Tools > Measure menu, the Measurements dock's list, and the gestures."""

    def __init__(
        self,
        window: QMainWindow,
        state: ViewerState,
        view: ImageViewBox,
        folder: Callable[[], str],
        say: Callable[[str, int], None],
        report: Callable[[str], None],
    ) -> None:
        self.window, self.state, self.view = window, state, view
        self.folder, self.say, self.report = folder, say, report
        self.book = MeasurementBook(state)
        self.drawn = MeasurementItems(view, self.book, state)
        self.actions: dict[str, QAction] = {}  # tool id -> its checkable action
        self.commands: dict[str, QAction] = {}  # the SR and clear commands, by their text
        self.others: dict[str, QAction] = {}  # the annotation's drawing tools: one tool at a time
        self._arm: tuple[tuple[float, float], tuple[float, float]] | None = None  # an angle's first arm
        self.preview = QGraphicsPathItem()
        self.preview.setPen(cosmetic_pen(COLOUR, 1.2, Qt.PenStyle.DashLine))
        self.preview.setZValue(100)
        view.addItem(self.preview)
        self.list = QListWidget()
        self.list.setObjectName("measurement_list")
        remove = QPushButton("Remove")
        remove.clicked.connect(self.remove_selected)
        self.panel = QWidget()
        column = QVBoxLayout(self.panel)
        column.setContentsMargins(2, 2, 2, 2)
        column.addWidget(self.list)
        column.addWidget(remove)
        self.list.itemDoubleClicked.connect(lambda item: self._go_to(self.list.row(item)))
        self.book.changed.connect(self._list)
        view.shape_finished.connect(self._on_shape)
        view.clicked.connect(self._on_click)

    def install(self, tools: QMenu, file: QMenu, others: dict[str, QAction]) -> None:
        """The tools (exclusive, also with the annotation drawing tools in ``others``) under
        Tools > Measure, and the SR commands in File."""
        menu = tools.addMenu("Measure")
        group = QActionGroup(self.window)
        group.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
        for tool, text, key, _kind in TOOLS:
            action = QAction(text, self.window, checkable=True)
            action.setObjectName(f"action_measure_{tool}")
            action.setShortcut(key)
            action.toggled.connect(lambda on, t=tool: self.set_tool(t if on else ""))
            group.addAction(action)
            menu.addAction(action)
            self.window.addAction(action)
            self.actions[tool] = action
        self.others = others
        for other in others.values():  # drawing a region of the annotation stops measuring
            other.toggled.connect(lambda on: on and check_only(self.actions))
        menu.addSeparator()
        for text, handler in (
            ("Save measurements as DICOM SR...", self.ask_save),
            ("Load measurements (DICOM SR)...", self.ask_load),
            ("Clear measurements", self.book.clear),
        ):
            action = QAction(text, self.window)
            action.triggered.connect(lambda _=False, h=handler: h())
            (file if "DICOM SR" in text else menu).addAction(action)
            self.commands[text] = action

    # --- tools ---------------------------------------------------------------------------------
    def set_tool(self, tool: str) -> None:
        self._arm = None
        self.preview.setPath(QPainterPath())
        if tool or self.view.tool in KIND_OF:
            self.view.tool = tool
        if tool:
            check_only(self.others)  # one tool at a time: the annotation's are unchecked
        check_only(self.actions, tool)
        if tool == "angle":
            self.say("Angle: drag the first arm to the vertex, then click the second arm's end; Esc stops", 0)
        elif tool:
            text = next(text for name, text, _key, _kind in TOOLS if name == tool)
            self.say(f"{text}: drag with the left button; Esc stops", 0)

    def _on_shape(self, tool: str, points) -> None:
        if tool not in KIND_OF:
            return
        points = tuple((float(x), float(y)) for x, y in points)
        if tool == "angle":
            self._arm = (points[0], points[-1])
            self.preview.setPath(shape_path("angle", list(self._arm)))
            return
        if KIND_OF[tool] == "polygon" and len(points) > 3:
            points = points[:: max(1, len(points) // 200)]  # a drag's samples: a few hundred do
        else:
            points = (points[0], points[-1])
        self._add(Measurement(KIND_OF[tool], self.state.frame, points))

    def _on_click(self, x: float, y: float) -> None:
        if self.view.tool == "angle" and self._arm is not None:
            arm, self._arm = self._arm, None
            self.preview.setPath(QPainterPath())
            self._add(Measurement("angle", self.state.frame, (arm[0], arm[1], (x, y))))

    def _add(self, measurement: Measurement) -> None:
        try:
            measured = self.book.add(measurement)
        except (MeasurementError, ValueError) as exc:
            self.say(str(exc), 6000)
            return
        self.say(f"{describe(measured)}; {measured.spacing}", 10000)
        dock = self.panel.parentWidget()
        if dock is not None and not dock.isVisible():
            dock.show()  # the first measurement opens the list

    # --- the list --------------------------------------------------------------------------------
    def _list(self) -> None:
        self.list.clear()
        for measured in self.book.items:
            self.list.addItem(describe(measured))
            self.list.item(self.list.count() - 1).setToolTip(measured.spacing)

    def _go_to(self, row: int) -> None:
        if 0 <= row < len(self.book.items):
            self.state.set_frame(self.book.items[row].measurement.frame)

    def remove_selected(self) -> None:
        self.book.remove(self.list.currentRow())

    # --- files ---------------------------------------------------------------------------------
    def ask_save(self, anonymize: bool = True) -> None:
        if not self.book.items:
            self.say("Nothing to save: measure something first", 5000)
            return
        path, _ = QFileDialog.getSaveFileName(
            self.window, "Save measurements", str(Path(self.folder()) / "measurements.dcm"), SR_FILTER
        )
        if path:
            self.save(path, anonymize=anonymize)

    def save(self, path: str | Path, *, anonymize: bool = True) -> Path | None:
        try:
            out = self.book.save(path, anonymize=anonymize)
        except (OSError, ValueError) as exc:
            self.report(f"Cannot save {path}: {exc}")
            return None
        self.say(f"Saved {len(self.book.items)} measurements to {out}", 5000)
        return out

    def ask_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Load measurements", self.folder(), SR_FILTER)
        if path:
            self.load(path)

    def load(self, path: str | Path) -> int:
        try:
            count = self.book.load(path)
        except (OSError, ValueError) as exc:
            self.report(str(exc))
            return 0
        self.say(f"Loaded {count} measurements from {Path(path).name}", 5000)
        return count
