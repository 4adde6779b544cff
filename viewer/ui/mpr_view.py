"""The MPR layout: axial, coronal and sagittal views of the volume on screen, with a linked
crosshair, every saliency layer and the annotation in each plane, and one shared window.

A view of :class:`~viewer.state.crosshair.Crosshair` (the point and the display volumes) and of the
:class:`ViewerState` (window, layers and their styles). Each plane is one ViewBox with small
items: the base image, an image item per layer, the annotation's outlines, two crosshair lines
in the colours of the planes they stand for (3D Slicer's: axial red, coronal green, sagittal
yellow) and orientation letters at the edges. A plane re-renders only when its own slice
changes; moving the point elsewhere moves its lines. Nothing is drawn while the layout is hidden.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QStackedLayout, QWidget

from viewer.io.image import Window
from viewer.io.mpr import PLANE_AXES, PLANES
from viewer.io.voi import apply_voi_lut, apply_window
from viewer.state import SaliencyLayer, ViewerState
from viewer.state.crosshair import Crosshair
from viewer.ui.canvas import ImageViewBox, MouseBindings, grey_lut, window_levels
from viewer.ui.layer_items import cosmetic_pen, label_colour, outline_path
from viewer.ui.measure_tools import MeasureTools

PLANE_COLOURS = {"axial": "#ff5252", "coronal": "#69f0ae", "sagittal": "#ffd740"}


class PlaneBox(ImageViewBox):
    """A plane's ViewBox: a left click, or a Shift+left drag, puts the crosshair under the mouse;
    the other gestures are the canvas's (window, pan, zoom, wheel through slices, and with a
    measuring tool on, a left drag or click measures)."""

    pointed = Signal(float, float)  # row, column of the plane under the mouse

    def mouseClickEvent(self, ev) -> None:
        if ev.button() == Qt.MouseButton.LeftButton and not self.tool:
            ev.accept()
            self._point(ev.pos())
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None) -> None:
        shift = ev.modifiers() & Qt.KeyboardModifier.ShiftModifier
        if ev.button() == Qt.MouseButton.LeftButton and shift:
            ev.accept()
            self._point(ev.pos())
        else:
            super().mouseDragEvent(ev, axis)

    def _point(self, pos) -> None:
        where = self.mapToView(pos)
        self.pointed.emit(float(where.y()), float(where.x()))


def plane_display(values: np.ndarray, state: ViewerState) -> tuple[np.ndarray, tuple[float, float]]:
    """A plane's grey levels for the state's window, as ``(data, levels)``: a linear window keeps
    the real-unit values and becomes the levels (as the canvas does); others are mapped first."""
    voi = state.voi
    if isinstance(voi, Window) and voi.function != "SIGMOID":
        return values, window_levels(voi)
    if isinstance(voi, Window):
        return apply_window(values, voi), (0.0, 1.0)
    if voi is not None:
        return apply_voi_lut(values, voi), (0.0, 1.0)
    return values, (float(values.min()), float(values.max()) or 1.0)


class PlaneView:
    """One plane: its ViewBox and the items in it."""

    def __init__(self, plane: str, crosshair: Crosshair, state: ViewerState, bindings: MouseBindings):
        self.plane, self.crosshair, self.state = plane, crosshair, state
        self.vb = PlaneBox(bindings)
        self.vb.setDefaultPadding(0.0)
        self.title = pg.LabelItem(justify="left", color=PLANE_COLOURS[plane], size="9pt")
        self.base = pg.ImageItem(axisOrder="row-major")
        self.vb.addItem(self.base)
        self.layers: dict[str, pg.ImageItem] = {}
        self.outlines: list = []
        # Another plane cuts this one along a line: horizontal where it is normal to this plane's
        # row axis, vertical where normal to its column axis.
        row_axis = PLANE_AXES[plane][1]
        self.lines = {
            other: pg.InfiniteLine(
                angle=0 if PLANE_AXES[other][0] == row_axis else 90,
                movable=False,
                pen=cosmetic_pen(PLANE_COLOURS[other], 1.0),
            )
            for other in PLANES
            if other != plane
        }
        for line in self.lines.values():
            line.setZValue(200)
            self.vb.addItem(line, ignoreBounds=True)
        self.letters = {edge: pg.TextItem(color="#e8e8e8", anchor=anchor) for edge, anchor in _EDGES.items()}
        for item in self.letters.values():
            item.setParentItem(self.vb)  # in the box's own (screen) coordinates: they stay at the edges
        self.vb.sigResized.connect(self.place_letters)
        self._shows: tuple = ()  # (volume, slice, window, invert) the base shows

    # --- drawing -----------------------------------------------------------------------------
    def new_volume(self) -> None:
        reformat = self.crosshair.reformat
        row_mm, col_mm = reformat.plane_spacing(self.plane)
        self.vb.setAspectLocked(True, ratio=col_mm / row_mm)
        for edge, letter in reformat.letters(self.plane).items():
            self.letters[edge].setText(letter)
        self._shows = ()
        self.draw()
        rows, cols = self._plane_shape()
        self.vb.setRange(xRange=(0, cols), yRange=(0, rows), padding=0.02)
        self.place_letters()

    def _plane_shape(self) -> tuple[int, int]:
        shape = self.crosshair.reformat.shape
        _normal, row, col = PLANE_AXES[self.plane]
        return shape[row], shape[col]

    def draw(self) -> None:
        """Everything that depends on the plane's slice, when it changed; the lines always."""
        crosshair, state = self.crosshair, self.state
        index = crosshair.plane_index(self.plane)
        key = (id(crosshair.pixels), index, state.voi, state.invert)
        if key != self._shows:
            values = crosshair.reformat.plane(crosshair.pixels, self.plane, index)
            data, levels = plane_display(values, state)
            self.base.setImage(data, autoLevels=False, levels=levels, lut=grey_lut(state))
            self.draw_layers()
            self.draw_annotation()
            self._shows = key
        self.place_lines()
        self.title.setText(self.title_text())

    def title_text(self) -> str:
        # Numbered as the array counts along that axis, so the acquired plane's number is the
        # single view's slice number.
        reformat = self.crosshair.reformat
        axis = reformat.axes[PLANE_AXES[self.plane][0]]
        index = round(float(self.crosshair.array_index()[axis]))
        mip = "  (maps: maximum-intensity projection)" if self.crosshair.mip else ""
        return f"{self.plane.capitalize()}  {index + 1} / {reformat.array_shape[axis]}{mip}"

    def place_lines(self) -> None:
        point = self.crosshair.point
        for other, line in self.lines.items():
            line.setValue(point[PLANE_AXES[other][0]] + 0.5)  # the centre of its voxel row or column

    def draw_layers(self) -> None:
        index = self.crosshair.plane_index(self.plane)
        for z, layer in enumerate(self.state.layers):
            item = self.layers.get(layer.method)
            if item is None:
                item = self.layers[layer.method] = pg.ImageItem(axisOrder="row-major")
                item.setZValue(10 + z)
                self.vb.addItem(item)
            plane = self._layer_plane(layer, index) if layer.visible else None
            if plane is None:
                item.setVisible(False)
                continue
            item.setImage(plane, autoLevels=False, levels=(0, 255), lut=layer.lut())
            item.setOpacity(layer.opacity)
            item.setVisible(True)
        for method in [m for m in self.layers if self.state.layer(m) is None]:
            self.vb.removeItem(self.layers.pop(method))

    def _layer_plane(self, layer: SaliencyLayer, index: int) -> np.ndarray | None:
        if self.crosshair.mip:
            return self.crosshair.layer_mip(layer, self.plane)
        volume = self.crosshair.layer_volume(layer)
        return None if volume is None else self.crosshair.reformat.plane(volume, self.plane, index)

    def restyle(self, layer: SaliencyLayer) -> None:
        """Opacity, colour map or threshold: no new plane, only the item's table and opacity."""
        item = self.layers.get(layer.method)
        if item is not None and item.image is not None:
            item.setLookupTable(layer.lut())
            item.setOpacity(layer.opacity)

    def draw_annotation(self) -> None:
        for item in self.outlines:
            self.vb.removeItem(item)
        self.outlines = []
        index = self.crosshair.plane_index(self.plane)
        volumes = self.crosshair.annotation_volumes()
        labels = tuple(volumes)
        for label, volume in volumes.items():
            mask = self.crosshair.reformat.plane(volume, self.plane, index)
            if mask.any():
                item = pg.QtWidgets.QGraphicsPathItem(outline_path(mask))
                item.setPen(cosmetic_pen(label_colour(labels, label), 1.4))
                item.setZValue(60)
                self.vb.addItem(item)
                self.outlines.append(item)

    def place_letters(self, *_args) -> None:
        rect = self.vb.boundingRect()
        spots = {
            "top": (rect.center().x(), rect.top() + 2),
            "bottom": (rect.center().x(), rect.bottom() - 2),
            "left": (rect.left() + 4, rect.center().y()),
            "right": (rect.right() - 4, rect.center().y()),
        }
        for edge, (x, y) in spots.items():
            self.letters[edge].setPos(x, y)


_EDGES = {"top": (0.5, 0.0), "bottom": (0.5, 1.0), "left": (0.0, 0.5), "right": (1.0, 0.5)}


def patient_text(point: tuple[float, float, float]) -> str:
    """LPS coordinates as radiologists say them: ``R 12.0  A 4.5  S 30.0 mm``."""
    sides = (("R", "L"), ("A", "P"), ("I", "S"))  # LPS: a positive value is the second side
    parts = [f"{side[value >= 0]} {abs(value):.1f}" for side, value in zip(sides, point, strict=True)]
    return "  ".join(parts) + " mm"


class MprView(QWidget):
    """Axial, coronal and sagittal views in a 2 x 2 grid, the fourth cell reading out the point;
    a line saying why when the image on screen is not a volume."""

    window_dragged = Signal(float, float)  # dx, dy in screen pixels, from any plane

    def __init__(
        self, crosshair: Crosshair, state: ViewerState, bindings: MouseBindings | None = None, parent=None
    ):
        super().__init__(parent)
        self.state, self.crosshair = state, crosshair  # the session's: the point and the MIP choice
        bindings = bindings or MouseBindings()
        self.message = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.message.setObjectName("mpr_message")
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("#000000")
        self.graphics.setObjectName("mpr_planes")
        stack = QStackedLayout(self)
        stack.addWidget(self.message)
        stack.addWidget(self.graphics)
        self.stack = stack
        self.planes = {plane: PlaneView(plane, self.crosshair, state, bindings) for plane in PLANES}
        self.readout = pg.LabelItem(justify="left", color="#e8e8e8", size="9pt")
        for (row, col), plane in zip(((0, 0), (0, 1), (2, 0)), PLANES, strict=True):
            view = self.planes[plane]
            self.graphics.addItem(view.title, row=row, col=col)
            self.graphics.addItem(view.vb, row=row + 1, col=col)
            view.vb.pointed.connect(lambda r, c, p=plane: self.crosshair.set_in_plane(p, r, c))
            view.vb.slice_scrolled.connect(lambda step, p=plane: self.crosshair.scroll(p, step))
            view.vb.window_dragged.connect(self.window_dragged)
        self.graphics.addItem(self.readout, row=3, col=1)
        self._stale = True  # something changed while hidden: drawn on the next show
        self._watched: dict[int, tuple[SaliencyLayer, object]] = {}

        self.crosshair.reformatted.connect(self._on_volume)
        self.crosshair.moved.connect(self._on_moved)
        self.crosshair.mip_changed.connect(self._on_mip)
        events = state.events
        events.voi.connect(self._redraw)
        events.invert.connect(self._redraw)
        events.annotation.connect(self._on_annotation)
        events.show_annotation.connect(self._on_annotation)
        state.layers.events.inserted.connect(lambda _i, layer: self._watch(layer))
        state.layers.events.removed.connect(lambda _i, layer: self._unwatch(layer))
        self._on_volume()

    def measure_with(self, tools: MeasureTools) -> None:
        """Measure in the three planes with the window's tools: a plane's gestures measure on it,
        and it shows what was measured there (or on the acquired slice it is)."""
        crosshair = self.crosshair

        def where(plane: str) -> tuple[str, int]:
            return plane, crosshair.plane_index(plane)

        def shown(plane: str) -> list:
            if crosshair.reformat is None:
                return []
            index = crosshair.plane_index(plane)
            return tools.book.in_plane(plane, index, crosshair.reformat.native_frame(plane, index))

        # Held here: signals hold their slots weakly.
        self.measured = {
            plane: tools.attach(view.vb, lambda p=plane: where(p), lambda p=plane: shown(p))
            for plane, view in self.planes.items()
        }
        for drawn in self.measured.values():
            crosshair.moved.connect(drawn.refresh)  # few items: cheap even while hidden
            crosshair.reformatted.connect(drawn.refresh)

    def _on_mip(self, _on: bool) -> None:
        """The crosshair's MIP choice changed: the layers and titles of the three planes redrawn."""
        if self._live():
            for view in self.planes.values():
                view.draw_layers()
                view.title.setText(view.title_text())

    # --- following the model ------------------------------------------------------------------
    def _live(self) -> bool:
        if self.isVisible() and self.crosshair.reformat is not None:
            return True
        self._stale = True
        return False

    def _on_volume(self) -> None:
        reason = self.crosshair.reason
        self.message.setText(reason)
        self.stack.setCurrentWidget(self.message if reason else self.graphics)
        if self._live():
            for view in self.planes.values():
                view.new_volume()
            self._read_out()
            self._stale = False

    def _on_moved(self, _point) -> None:
        if self._live():
            for view in self.planes.values():
                view.draw()
            self._read_out()

    def _redraw(self, *_args) -> None:
        if self._live():
            for view in self.planes.values():
                view.draw()

    def _on_annotation(self, *_args) -> None:
        if self._live():
            for view in self.planes.values():
                view.draw_annotation()

    def _watch(self, layer: SaliencyLayer) -> None:
        def changed(info) -> None:
            if not self._live():
                return
            restyle = info.signal.name in ("opacity", "colormap", "low", "high")
            for view in self.planes.values():
                view.restyle(layer) if restyle else view.draw_layers()
            if not restyle:
                self._read_out()  # the readout lists the visible layers' values

        layer.events.all.connect(changed)
        self._watched[id(layer)] = (layer, changed)
        self._on_layers()

    def _unwatch(self, layer: SaliencyLayer) -> None:
        held = self._watched.pop(id(layer), None)
        if held is not None:
            layer.events.all.disconnect(held[1])
        self._on_layers()

    def _on_layers(self) -> None:
        if self._live():
            for view in self.planes.values():
                view.draw_layers()
            self._read_out()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale and self.crosshair.reformat is not None:
            self._on_volume()

    # --- the readout --------------------------------------------------------------------------
    def _read_out(self) -> None:
        crosshair, image = self.crosshair, self.state.image
        k, j, i = (round(float(v)) for v in crosshair.array_index())
        lines = [
            f"Slice {k + 1}, row {j + 1}, column {i + 1}",
            patient_text(crosshair.patient()),
            f"{image.pixels[k, j, i]:.0f} {image.units}".strip(),
        ]
        for layer in self.state.layers:
            values = layer.values(k)
            if values is not None and layer.visible:
                lines.append(f"{layer.title}: {values[j, i]:.2f}")
        lines.extend(crosshair.reformat.notes)
        self.readout.setText("<br>".join(lines))
