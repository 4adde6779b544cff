"""The image canvas: the base image with windowing, saliency layers, the annotation and corner text.

A view of :class:`~viewer.state.ViewerState`: it listens to the state's events and redraws only
what changed (a new frame re-renders the base and the layers; opacity is a property of the layer's
graphics item and costs no re-render; a threshold swaps the layer's lookup table). Mouse gestures
are turned into state changes (window, slice) or view changes (pan, zoom) by :class:`ImageViewBox`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPainterPath
from PySide6.QtWidgets import QGraphicsPathItem, QLabel

from viewer.io.image import Window
from viewer.io.overlay import COLORMAPS, colormap
from viewer.io.voi import to_display
from viewer.state import SaliencyLayer, ViewerState
from viewer.ui.layer_items import AnnotationItem, SaliencyLayerItem, cosmetic_pen

pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)

# Drawing tools whose drag collects every point (the rest keep the first and the last), and
# those drawn as open lines.
FREEHAND = ("polygon", "roi-freehand")
LINES = ("length", "angle")

GREY = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)


@dataclass
class MouseBindings:
    """What each mouse button does while dragging on the image (a preference: viewers disagree).

    Actions: ``"window"`` (horizontal = width, vertical = level), ``"pan"``, ``"zoom"``.
    ``level_up_when_dragging_up``: Weasis raises the level when dragging up, OHIF lowers it.
    """

    left: str = "window"
    middle: str = "pan"
    right: str = "zoom"
    level_up_when_dragging_up: bool = True
    # Window change per screen pixel of drag, as a fraction of the image's value range.
    window_sensitivity: float = 0.002


class ImageViewBox(pg.ViewBox):
    """A ViewBox with a radiology viewer's mouse: window, pan and zoom by button, wheel for slices,
    Ctrl+wheel to zoom around the cursor, and left-drag drawing while an annotation tool is on."""

    window_dragged = Signal(float, float)  # dx, dy in screen pixels
    slice_scrolled = Signal(int)  # +1 / -1 per wheel notch
    shape_progress = Signal(object)  # list of (x, y) while drawing
    shape_finished = Signal(str, object)  # tool, (n, 2) array of (x, y)
    clicked = Signal(float, float)  # x, y of a left click while a tool is on (an angle's last point)

    def __init__(self, bindings: MouseBindings):
        super().__init__(invertY=True, lockAspect=True, enableMenu=False)
        self.bindings = bindings
        self.tool = ""  # "", an annotation shape ("rectangle", ...) or a measuring tool ("length", ...)
        self._points: list[tuple[float, float]] = []

    def mouseDragEvent(self, ev, axis=None) -> None:
        button = ev.button()
        if self.tool and button == Qt.MouseButton.LeftButton:
            self._draw(ev)
            return
        action = {
            Qt.MouseButton.LeftButton: self.bindings.left,
            Qt.MouseButton.MiddleButton: self.bindings.middle,
            Qt.MouseButton.RightButton: self.bindings.right,
        }.get(button)
        if action is None:
            ev.ignore()
            return
        ev.accept()
        delta = ev.screenPos() - ev.lastScreenPos()
        if action == "window":
            self.window_dragged.emit(float(delta.x()), float(delta.y()))
        elif action == "pan":
            shift = self.mapToView(ev.pos()) - self.mapToView(ev.lastPos())
            self.translateBy(x=-shift.x(), y=-shift.y())
        elif action == "zoom":
            factor = 1.01 ** float(delta.y())
            self.scaleBy((factor, factor), center=self.mapToView(ev.buttonDownPos()))

    def _draw(self, ev) -> None:
        ev.accept()
        point = self.mapToView(ev.pos())
        if ev.isStart():
            start = self.mapToView(ev.buttonDownPos())
            self._points = [(start.x(), start.y())]
        if self.tool in FREEHAND:
            self._points.append((point.x(), point.y()))
        else:
            self._points = [self._points[0], (point.x(), point.y())]
        if ev.isFinish():
            points, self._points = np.array(self._points), []
            self.shape_finished.emit(self.tool, points)
        else:
            self.shape_progress.emit(list(self._points))

    def mouseClickEvent(self, ev) -> None:
        if self.tool and ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            point = self.mapToView(ev.pos())
            self.clicked.emit(float(point.x()), float(point.y()))
        else:
            super().mouseClickEvent(ev)

    def wheelEvent(self, ev, axis=None) -> None:
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(ev, axis)  # pyqtgraph zooms around the cursor
            return
        ev.accept()
        self.slice_scrolled.emit(-1 if ev.delta() > 0 else 1)


def shape_path(tool: str, points: list[tuple[float, float]]) -> QPainterPath:
    path = QPainterPath()
    if len(points) < 2:
        return path
    if tool in LINES:
        path.moveTo(*points[0])
        for x, y in points[1:]:
            path.lineTo(x, y)
        return path
    if tool in FREEHAND:
        path.moveTo(*points[0])
        for x, y in points[1:]:
            path.lineTo(x, y)
        path.closeSubpath()
    else:
        (x0, y0), (x1, y1) = points[0], points[-1]
        rect = QRectF(QPointF(x0, y0), QPointF(x1, y1)).normalized()
        path.addEllipse(rect) if tool.endswith("ellipse") else path.addRect(rect)
    return path


def window_levels(window: Window) -> tuple[float, float]:
    """The image item's levels for a linear window (DICOM PS3.3 C.11.2.1.2): LINEAR maps
    c - 0.5 -+ (w - 1) / 2, LINEAR_EXACT c -+ w / 2."""
    if window.function == "LINEAR":
        half = max(window.width - 1, 1e-6) / 2
        return window.center - 0.5 - half, window.center - 0.5 + half
    return window.low, window.high


def grey_lut(state: ViewerState) -> np.ndarray:
    # MONOCHROME1 and "invert" act after the VOI: the lookup table reverses the grey ramp.
    return GREY[::-1] if state.invert else GREY


def base_display(state: ViewerState) -> tuple[np.ndarray, tuple[float, float], np.ndarray | None, bool]:
    """What an image item shows for the state's frame: ``(data, levels, lut, raw)``. Linear windows
    keep the real-unit pixels (``raw``) and become the item's levels, so a window drag re-levels
    without a copy; sigmoid windows and VOI LUTs are mapped to [0, 1] first; colour is shown as is."""
    image, voi, frame = state.image, state.voi, state.frame
    if image.is_color:
        return to_display(image, frame), (0.0, 1.0), None, False
    if isinstance(voi, Window) and voi.function != "SIGMOID":
        return image.frame(frame), window_levels(voi), grey_lut(state), True
    return to_display(image, frame, voi, invert=False), (0.0, 1.0), grey_lut(state), False


@cache
def pg_colormap(name: str) -> pg.ColorMap:
    """pyqtgraph's ColorMap of one of our colour maps (built once: it converts 256 colours)."""
    table = colormap(name)
    return pg.ColorMap(np.linspace(0.0, 1.0, len(table)), table, name=name)


def draw_outlined_text(
    painter: QPainter, rect: QRectF, flags: int, text: str, colour: str = "#f0f0f0", halo: int = 1
) -> None:
    """``text`` in light type over a dark outline ``halo`` pixels wide: it reads on black and on
    a white film alike (corner text, on screen and in exports)."""
    painter.setPen(QColor(0, 0, 0, 230))
    for dx in range(-halo, halo + 1):
        for dy in range(-halo, halo + 1):
            if dx or dy:
                painter.drawText(rect.translated(dx, dy), flags, text)
    painter.setPen(QColor(colour))
    painter.drawText(rect, flags, text)


class OutlinedLabel(QLabel):
    """A plain-text label drawn with a dark outline (:func:`draw_outlined_text`)."""

    def __init__(self, parent=None, colour: str = "#e8e8e8") -> None:
        super().__init__(parent)
        self.colour = colour
        self.setContentsMargins(1, 1, 1, 1)  # room for the outline

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing)
        painter.setFont(self.font())
        draw_outlined_text(
            painter, QRectF(self.contentsRect()), int(self.alignment()), self.text(), self.colour
        )
        painter.end()


class CornerLabels:
    """Four text blocks pinned to the corners of a view's viewport (patient, study, W/L, slice)."""

    CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")

    def __init__(self, view: pg.GraphicsView):
        self.view = view
        self.right_margin = 0  # the colour bar's width, kept clear on the right
        self.held = False  # while an export draws them: texts set meanwhile are left out
        self.labels: dict[str, QLabel] = {}
        for corner in self.CORNERS:
            label = OutlinedLabel(view.viewport())
            label.setObjectName(f"corner_{corner}")
            label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
            label.setTextFormat(Qt.TextFormat.PlainText)  # header text is never markup
            label.setStyleSheet("color: #e8e8e8; background: transparent; font-size: 11px;")
            right = corner.endswith("right")
            label.setAlignment(Qt.AlignmentFlag.AlignRight if right else Qt.AlignmentFlag.AlignLeft)
            self.labels[corner] = label

    def set_texts(self, texts: dict[str, str]) -> None:
        if self.held:
            return
        for corner, label in self.labels.items():
            label.setText(texts.get(corner, ""))
            label.adjustSize()
        self.place()

    def set_visible(self, visible: bool) -> None:
        for label in self.labels.values():
            label.setVisible(visible)

    def place(self, right_margin: int | None = None) -> None:
        if right_margin is not None:
            self.right_margin = right_margin
        rect = self.view.viewport().rect()
        pad = 6
        for corner, label in self.labels.items():
            x = pad if corner.endswith("left") else rect.width() - label.width() - pad - self.right_margin
            y = pad if corner.startswith("top") else rect.height() - label.height() - pad
            label.move(max(0, x), max(0, y))


class ImageCanvas(pg.GraphicsView):
    """The main view: image, saliency layers, annotation, colour bar and corner text."""

    cursor_moved = Signal(object)  # (row, col) under the cursor, or None outside the image
    view_changed = Signal()

    def __init__(self, state: ViewerState, bindings: MouseBindings | None = None, parent=None):
        super().__init__(parent, background="#000000")
        self.state = state
        self.bindings = bindings or MouseBindings()
        self.layout_item = pg.GraphicsLayout()
        self.layout_item.setContentsMargins(0, 0, 0, 0)
        self.setCentralItem(self.layout_item)
        self.vb = ImageViewBox(self.bindings)
        self.vb.setDefaultPadding(0.0)
        self.layout_item.addItem(self.vb, row=0, col=0)
        self.colorbar = pg.ColorBarItem(values=(0.0, 1.0), width=14, interactive=False, colorMapMenu=False)
        self.colorbar.getAxis("right").setTextPen("#e8e8e8")
        # Room above and below the bar for the half-height of its end labels ("1.0", "0").
        self.colorbar.setContentsMargins(0, 10, 2, 10)
        self.layout_item.addItem(self.colorbar, row=0, col=1)
        self.colorbar.hide()
        # The bar's width is known only once the layout has placed it: move the text then.
        self.colorbar.geometryChanged.connect(lambda: self.corners.place(self._colorbar_width()))
        for name in COLORMAPS:  # built now, not when the first map arrives during a computation
            pg_colormap(name)

        self.base = pg.ImageItem(axisOrder="row-major")
        self._raw_base = False  # the base shows real-unit pixels leveled by a linear window
        self._base_shows: tuple = ()  # (image, frame, window, invert) the base item shows
        self.vb.addItem(self.base)
        self.overlays: dict[str, SaliencyLayerItem] = {}  # method -> its layer's item
        self.annotation = AnnotationItem(state)
        self.vb.addItem(self.annotation)
        self.preview = QGraphicsPathItem()
        self.preview.setPen(cosmetic_pen("#ffeb3b", 1.5, Qt.PenStyle.DashLine))
        self.preview.setZValue(100)
        self.vb.addItem(self.preview)
        self.corners = CornerLabels(self)
        self.vb.shape_progress.connect(self._on_shape_progress)
        self.vb.shape_finished.connect(lambda *_: self.preview.setPath(QPainterPath()))
        self.vb.sigRangeChanged.connect(lambda *_: self.view_changed.emit())
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)

        events = state.events
        events.image.connect(self._on_image)
        events.frame.connect(self._on_frame)
        events.voi.connect(self._show_levels)
        events.invert.connect(self._show_levels)
        events.annotation.connect(self.refresh_annotation)
        events.show_annotation.connect(self.refresh_annotation)
        events.annotation_style.connect(self.refresh_annotation)
        events.active_layer.connect(self._show_colorbar)
        state.layers.events.inserted.connect(self._on_layer_inserted)
        state.layers.events.removed.connect(self._on_layer_removed)

    # --- base image -------------------------------------------------------------------------
    def _on_image(self, image) -> None:
        for method in list(self.overlays):
            self._remove_overlay(method)
        if image is None:
            self.base.clear()
            self.viewport().update()  # ImageItem.clear() repaints only its new, empty rectangle
            return
        self.vb.setAspectLocked(True, ratio=1.0 / image.geometry.pixel_aspect)
        self._show_base()
        self.refresh_annotation()
        self.fit()

    def _on_frame(self, _frame: int) -> None:
        if self._base_shows != self._base_key():  # on open the image event drew this frame already
            self._show_base()
        for item in self.overlays.values():
            item.refresh()
        self.refresh_annotation()

    def _base_key(self) -> tuple:
        state = self.state
        return (id(state.image), state.frame, state.voi, state.invert)

    def _show_base(self) -> None:
        if self.state.image is None:
            return
        data, levels, lut, self._raw_base = base_display(self.state)
        self.base.setImage(data, autoLevels=False, levels=levels, lut=lut)
        self._base_shows = self._base_key()

    def _show_levels(self, *_args) -> None:
        image, voi = self.state.image, self.state.voi
        if image is None or image.is_color or self._base_shows == self._base_key():
            return
        if self._raw_base and isinstance(voi, Window) and voi.function != "SIGMOID":
            self.base.setLevels(window_levels(voi))  # no new image: just new levels and ramp
            self.base.setLookupTable(grey_lut(self.state))
            self._base_shows = self._base_key()
        else:
            self._show_base()

    # --- view -------------------------------------------------------------------------------
    def fit(self) -> None:
        image = self.state.image
        if image is not None:
            self.vb.setRange(QRectF(0, 0, image.columns, image.rows), padding=0.0)

    def actual_size(self) -> None:
        """One image pixel per screen pixel (device-independent), around the current centre."""
        image = self.state.image
        if image is None:
            return
        centre = self.vb.viewRect().center()
        width = self.vb.width() or 1.0
        height = self.vb.height() or 1.0
        rect = QRectF(0, 0, width, height * image.geometry.pixel_aspect)
        rect.moveCenter(centre)
        self.vb.setRange(rect, padding=0.0)

    def zoom_by(self, factor: float) -> None:
        self.vb.scaleBy((1 / factor, 1 / factor))

    def zoom(self) -> float:
        """Screen pixels per image column."""
        size = self.vb.viewPixelSize()[0]
        return 1.0 / size if size > 0 else 1.0

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        if hasattr(self, "corners"):  # pyqtgraph resizes once inside its own constructor
            self.corners.place(right_margin=self._colorbar_width())

    def _colorbar_width(self) -> int:
        return int(self.colorbar.width()) if self.colorbar.isVisible() else 0

    # --- saliency layers ----------------------------------------------------------------------
    def _on_layer_inserted(self, _index: int, layer: SaliencyLayer) -> None:
        item = SaliencyLayerItem(layer, self.state, z=10 + len(self.overlays))
        item.restyled.connect(lambda: layer.method == self.state.active_layer and self._show_colorbar())
        self.vb.addItem(item)
        self.overlays[layer.method] = item
        self._show_colorbar()

    def _on_layer_removed(self, _index: int, layer: SaliencyLayer) -> None:
        self._remove_overlay(layer.method)
        self._show_colorbar()

    def _remove_overlay(self, method: str) -> None:
        item = self.overlays.pop(method, None)
        if item is not None:
            item.detach()
            self.vb.removeItem(item)

    def _show_colorbar(self, *_args) -> None:
        layer = self.state.active()
        if layer is None:
            self.colorbar.hide()
        else:
            self.colorbar.setColorMap(pg_colormap(layer.colormap))
            self.colorbar.setLevels(values=(-1.0, 1.0) if layer.signed else (0.0, 1.0))
            self.colorbar.getAxis("right").setLabel(layer.title)
            self.colorbar.show()
        self.corners.place(right_margin=self._colorbar_width())

    # --- annotation -------------------------------------------------------------------------
    def refresh_annotation(self, *_args) -> None:
        self.annotation.refresh()

    def _on_shape_progress(self, points) -> None:
        self.preview.setPath(shape_path(self.vb.tool, points))

    # --- cursor -----------------------------------------------------------------------------
    def _on_mouse_moved(self, scene_pos) -> None:
        image = self.state.image
        if image is None or not self.vb.sceneBoundingRect().contains(scene_pos):
            self.cursor_moved.emit(None)
            return
        point = self.vb.mapSceneToView(scene_pos)
        row, col = int(np.floor(point.y())), int(np.floor(point.x()))
        inside = 0 <= row < image.rows and 0 <= col < image.columns
        self.cursor_moved.emit((row, col) if inside else None)
