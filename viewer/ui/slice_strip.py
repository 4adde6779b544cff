"""The slice strip under the image of a series: one column per slice, the model's probability of
the target on it (top row) and the strongest value of the selected map there (bottom row, empty
where the map was not computed), with the slice on screen marked. The user sees at a glance
where in the volume the model fires and where its explanation does; a click or a drag goes to
that slice. Hidden for single images.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

from viewer.state.session import ViewerSession

PROBABILITY = QColor("#4fc3f7")
MAP = QColor("#ff7043")
MARK = QColor("#ffffff")


def slice_strengths(layer, frames: int) -> np.ndarray | None:
    """The strongest magnitude of ``layer``'s map on each of ``frames`` slices (NaN where it was
    not computed); None without maps. Read on the model grid (a few times smaller than the
    native one, and the native map is its interpolation), so a 200-slice series costs little."""
    if layer is None or not layer.maps:
        return None
    out = np.full(frames, np.nan, np.float32)
    for frame, smap in layer.maps.items():
        if frame < frames:
            out[frame] = float(np.abs(smap.frame_grid(frame)).max())
    return out


class SliceStrip(QWidget):
    """The strip; it listens to the session and its state."""

    ROW = 10  # pixels per row

    def __init__(self, session: ViewerSession, parent: QWidget | None = None):
        super().__init__(parent)
        self.session, self.state = session, session.state
        self.setObjectName("slice_strip")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip(
            "Top: the model's probability of the target on each slice. Bottom: the selected map's "
            "strongest value there. Click or drag to go to a slice."
        )
        self.probability: np.ndarray | None = None
        self.strength: np.ndarray | None = None
        self._held: tuple = ()  # (layer, maps key) the strengths were measured for
        self._follow: object | None = None  # the layer whose maps event is connected
        events = self.state.events
        events.image.connect(self._on_image)
        events.frame.connect(lambda *_: self.update())
        events.target.connect(self.refresh)
        events.active_layer.connect(self.refresh)
        session.model.predicted.connect(self.refresh)
        self.state.layers.events.removed.connect(self.refresh)
        self._on_image(self.state.image)

    def sizeHint(self) -> QSize:
        return QSize(400, 2 * self.ROW + 6)

    def _on_image(self, image) -> None:
        self.setVisible(image is not None and image.n_frames > 1)
        self.refresh()

    def refresh(self, *_args) -> None:
        session, state = self.session, self.state
        prediction, target = session.model.prediction, state.target
        self.probability = None
        # A 3-D model has one probability for the series: no slice-by-slice row to draw.
        per_slice = prediction is not None and not prediction.per_volume
        if per_slice and target in prediction.labels and state.image is not None:
            column = prediction.probabilities[:, prediction.labels.index(target)]
            if len(column) == state.image.n_frames:
                self.probability = np.asarray(column, np.float32)
        layer = state.active()
        if self._follow is not layer:
            if self._follow is not None:
                self._follow.events.maps.disconnect(self.refresh)
            if layer is not None:
                layer.events.maps.connect(self.refresh)
            self._follow = layer
        key = (id(layer), layer.maps_key()) if layer else ()
        if key != self._held:
            frames = state.image.n_frames if state.image is not None else 0
            self.strength, self._held = slice_strengths(layer, frames), key
        self.update()

    # --- drawing ------------------------------------------------------------------------------
    def paintEvent(self, _event) -> None:
        image = self.state.image
        if image is None or image.n_frames < 2:
            return
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#101010"))
        n, width = image.n_frames, self.width()
        step = width / n
        for row, (values, colour) in enumerate(((self.probability, PROBABILITY), (self.strength, MAP))):
            top = 2 + row * (self.ROW + 2)
            if values is None:
                continue
            for frame in range(min(n, len(values))):
                value = values[frame]
                if not np.isfinite(value):
                    continue
                shade = QColor(colour)
                shade.setAlphaF(float(np.clip(0.15 + 0.85 * value, 0.15, 1.0)))
                painter.fillRect(QRectF(frame * step, top, max(step - 0.5, 1.0), self.ROW), shade)
        painter.setPen(MARK)
        x = (self.state.frame + 0.5) * step
        painter.drawLine(round(x), 0, round(x), self.height())
        painter.end()

    # --- going to a slice ---------------------------------------------------------------------
    def frame_at(self, x: float) -> int:
        image = self.state.image
        return int(np.clip(x / max(self.width(), 1) * image.n_frames, 0, image.n_frames - 1))

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.state.image is not None:
            self.state.set_frame(self.frame_at(event.position().x()))

    def mouseMoveEvent(self, event) -> None:
        if event.buttons() & Qt.MouseButton.LeftButton and self.state.image is not None:
            self.state.set_frame(self.frame_at(event.position().x()))
