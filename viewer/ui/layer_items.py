"""One small graphics item per kind of layer, as napari's layer visuals: an item connects to its
layer's events when made and disconnects when removed, so a view keeps no bookkeeping of its own.

``SaliencyLayerItem`` draws one saliency layer on the slice on screen (opacity is the item's
property, a threshold or colour map swaps the lookup table, a visibility toggle costs no
re-render). ``AnnotationItem`` draws the annotation's outlines (and its fill, when asked) for
every view that shows it: the canvas and each comparison tile.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainterPath, QPen

from viewer.io.overlay import outline_segments
from viewer.state import SaliencyLayer, ViewerState

# Colours of annotation labels, in the order labels appear (distinct from the saliency maps).
LABEL_COLOURS = ("#00e5ff", "#76ff03", "#ff4081", "#ffd740", "#e040fb", "#ffffff")


def label_colour(labels: tuple[str, ...], label: str) -> str:
    return LABEL_COLOURS[labels.index(label) % len(LABEL_COLOURS)] if label in labels else "#ffffff"


def cosmetic_pen(colour: str, width: float = 1.5, style=Qt.PenStyle.SolidLine) -> QPen:
    """A pen whose width is in screen pixels, so outlines stay visible at every zoom."""
    pen = QPen(QColor(colour), width, style)
    pen.setCosmetic(True)
    return pen


def outline_path(mask: np.ndarray) -> QPainterPath:
    """The boundary of a mask along pixel edges, in image coordinates (the one outline renderer:
    views draw it as an item, exports with a painter)."""
    path = QPainterPath()
    for x0, y0, x1, y1 in outline_segments(mask):
        path.moveTo(float(x0), float(y0))
        path.lineTo(float(x1), float(y1))
    return path


def annotation_outlines(state: ViewerState) -> list[tuple[str, np.ndarray]]:
    """``(colour, mask)`` of each label of the annotation drawn on the slice on screen."""
    annotation, image = state.annotation, state.image
    if image is None or annotation is None or not state.show_annotation:
        return []
    labels = annotation.labels
    out = []
    for label in labels:
        mask = annotation.mask(image, label)[state.frame]
        if mask.any():
            out.append((label_colour(labels, label), mask))
    return out


class SaliencyLayerItem(pg.ImageItem):
    """A saliency layer's map on the state's frame, styled by the layer."""

    restyled = Signal()  # the colour map or threshold changed (the colour bar follows)

    def __init__(self, layer: SaliencyLayer, state: ViewerState, z: float) -> None:
        super().__init__(axisOrder="row-major")
        self.layer, self.state = layer, state
        self._shows: tuple | None = None  # (map, frame) the item holds
        self.setZValue(z)
        self.setOpacity(layer.opacity)
        events = layer.events
        self._connections = [
            (events.maps, self.refresh),
            (events.visible, self.refresh),
            (events.opacity, self._on_opacity),
            (events.colormap, self._restyle),
            (events.low, self._restyle),
            (events.high, self._restyle),
        ]
        for signal, slot in self._connections:
            signal.connect(slot)
        self.refresh()

    def detach(self) -> None:
        """Stop following the layer (the view removes the item)."""
        for signal, slot in self._connections:
            signal.disconnect(slot)
        self._connections = []

    def refresh(self, *_args) -> None:
        layer, frame = self.layer, self.state.frame
        smap = layer.map_for(frame)
        if smap is None or not layer.visible:
            self.setVisible(False)
            return
        if self._shows is None or self._shows[0] is not smap or self._shows[1] != frame:
            self.setImage(layer.display_index(frame), autoLevels=False, levels=(0, 255), lut=layer.lut())
            self._shows = (smap, frame)
        self.setVisible(True)

    def _on_opacity(self, value: float) -> None:
        self.setOpacity(value)

    def _restyle(self, *_args) -> None:
        if self.image is not None:
            self.setLookupTable(self.layer.lut())
        self.restyled.emit()


class AnnotationItem(pg.GraphicsObject):
    """The state's annotation on its frame: outlines with cosmetic pens, and a translucent fill in
    the ``"fill"`` style when ``fill`` is allowed."""

    def __init__(self, state: ViewerState, *, width: float = 1.6, fill: bool = True, z: float = 60) -> None:
        super().__init__()
        self.state, self.width, self.allow_fill = state, width, fill
        self.outlines: list[tuple[QPainterPath, QPen]] = []
        self._bounds = QRectF()
        self.fill = pg.ImageItem(axisOrder="row-major")
        self.fill.setParentItem(self)
        self.fill.setZValue(-1)
        self.setZValue(z)

    def refresh(self, *_args) -> None:
        self.prepareGeometryChange()
        state = self.state
        drawn = annotation_outlines(state)
        self.outlines = [(outline_path(mask), cosmetic_pen(colour, self.width)) for colour, mask in drawn]
        image = state.image
        self._bounds = QRectF(0, 0, image.columns, image.rows) if image is not None else QRectF()
        if self.allow_fill and drawn and state.annotation_style == "fill":
            rgba = np.zeros((*drawn[0][1].shape, 4), np.uint8)
            for colour, mask in drawn:
                rgba[mask] = (*QColor(colour).getRgb()[:3], 110)
            self.fill.setImage(rgba, autoLevels=False, levels=(0, 255))
        else:
            self.fill.clear()
        self.update()

    def boundingRect(self) -> QRectF:
        return self._bounds

    def paint(self, painter, *_args) -> None:
        for path, pen in self.outlines:
            painter.setPen(pen)
            painter.drawPath(path)
