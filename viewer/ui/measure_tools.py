"""Measuring in the single view and the MPR planes: length, angle and rectangle, ellipse and
freehand regions (with the statistics of the pixels inside), drawn with the left button, listed
in the Measurements dock, shown on their slice or plane with their values, saved as and loaded
from a DICOM SR (TID 1500).

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
from viewer.state.session import ViewerSession
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
LABEL_PLATE = (0, 0, 0, 170)
SR_FILTER = "DICOM SR (*.dcm);;All files (*)"


def describe(measured: Measured) -> str:
    m = measured.measurement
    label = f" '{m.label}'" if m.label else ""
    where = f"{m.plane} plane {m.frame + 1}" if m.plane else f"slice {m.frame + 1}"
    return f"{m.kind.capitalize()}{label}, {where}: {measured.text()}"


class MeasurementItems:
    """The measurements ``shown()`` as graphics items in a view box (the canvas' own, for the
    slice on screen, or an MPR plane's); redrawn on ``refresh``."""

    def __init__(
        self, view: ImageViewBox, book: MeasurementBook, shown: Callable[[], list[Measured]]
    ) -> None:
        self.view, self.book, self.shown = view, book, shown
        self.items: list = []
        book.changed.connect(self.refresh)

    def refresh(self, *_args) -> None:
        for item in self.items:
            self.view.removeItem(item)
        self.items = []
        for measured in self.shown():
            m = measured.measurement
            tool = next(t for t, _x, _k, kind in TOOLS if kind == m.kind)
            outline = QGraphicsPathItem(shape_path(tool, list(m.points)))
            outline.setPen(cosmetic_pen(COLOUR, 1.6))
            outline.setZValue(90)
            # On a dark plate: the value reads on a white film as on black.
            text = pg.TextItem(measured.text(), color=COLOUR, anchor=(0, 1), fill=LABEL_PLATE)
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
        session: ViewerSession,
        view: ImageViewBox,
        folder: Callable[[], str],
        say: Callable[[str, int], None],
    ) -> None:
        state = session.state
        self.window, self.state, self.view = window, state, view
        self.folder, self.say, self.report = folder, say, session.reports.report_error
        # The session's: the measurements (kept per image) and the MPR point a row goes to.
        self.book, self.crosshair = session.measurements, session.crosshair
        self.actions: dict[str, QAction] = {}  # tool id -> its checkable action
        self.commands: dict[str, QAction] = {}  # the SR and clear commands, by their text
        self.others: dict[str, QAction] = {}  # the annotation's drawing tools: one tool at a time
        # An angle's first arm, and the view box it is drawn in.
        self._arm: tuple[ImageViewBox, tuple[tuple[float, float], tuple[float, float]]] | None = None
        self.previews: dict[ImageViewBox, QGraphicsPathItem] = {}  # every view box measured in
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
        self.drawn = self.attach(view, lambda: ("", state.frame), lambda: self.book.on_frame(state.frame))
        state.events.frame.connect(self.drawn.refresh)

    def attach(
        self, view: ImageViewBox, where: Callable[[], tuple[str, int]], shown: Callable[[], list[Measured]]
    ) -> MeasurementItems:
        """Measure in ``view`` too: its gestures make measurements at ``where()`` (an MPR plane
        and its index, or "" and the slice), and it draws ``shown()`` (its caller refreshes the
        returned items when the place changes)."""
        preview = QGraphicsPathItem()
        preview.setPen(cosmetic_pen(COLOUR, 1.2, Qt.PenStyle.DashLine))
        preview.setZValue(100)
        view.addItem(preview)
        self.previews[view] = preview
        view.shape_finished.connect(lambda tool, points: self._on_shape(view, where, tool, points))
        view.clicked.connect(lambda x, y: self._on_click(view, where, x, y))
        if view is not self.view:  # the canvas draws its own rubber band while dragging
            view.shape_progress.connect(
                lambda points: view.tool in KIND_OF and preview.setPath(shape_path(view.tool, points))
            )
        view.tool = self.view.tool if self.view.tool in KIND_OF else view.tool
        return MeasurementItems(view, self.book, shown)

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
            if "DICOM SR" in text:  # with the other exports, above "Show patient identifiers" and Quit
                before = next((a for a in file.actions() if a.objectName() == "action_show_phi"), None)
                file.insertAction(before, action)
            else:
                menu.addAction(action)
            self.commands[text] = action

    # --- tools ---------------------------------------------------------------------------------
    def set_tool(self, tool: str) -> None:
        self._arm = None
        for view, preview in self.previews.items():
            preview.setPath(QPainterPath())
            if view is not self.view:
                view.tool = tool  # the MPR planes only measure
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

    def _on_shape(self, view: ImageViewBox, where, tool: str, points) -> None:
        if tool not in KIND_OF:
            return
        preview = self.previews[view]
        points = tuple((float(x), float(y)) for x, y in points)
        if tool == "angle":
            self._arm = (view, (points[0], points[-1]))
            preview.setPath(shape_path("angle", list(self._arm[1])))
            return
        preview.setPath(QPainterPath())
        if KIND_OF[tool] == "polygon" and len(points) > 3:
            points = points[:: max(1, len(points) // 200)]  # a drag's samples: a few hundred do
        else:
            points = (points[0], points[-1])
        plane, index = where()
        self._add(Measurement(KIND_OF[tool], index, points, plane=plane))

    def _on_click(self, view: ImageViewBox, where, x: float, y: float) -> None:
        if view.tool == "angle" and self._arm is not None and self._arm[0] is view:
            (_view, arm), self._arm = self._arm, None
            self.previews[view].setPath(QPainterPath())
            plane, index = where()
            self._add(Measurement("angle", index, (arm[0], arm[1], (x, y)), plane=plane))

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
            m = self.book.items[row].measurement
            if not m.plane:
                self.state.set_frame(m.frame)
            else:  # a plane of the MPR: the crosshair goes there
                self.crosshair.set_plane_index(m.plane, m.frame)

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
