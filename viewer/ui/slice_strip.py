"""The slice strip under the image of a series: one column per slice, the model's probability of
the target on it (top row) and the strongest value of the selected map there (bottom row, empty
where the map was not computed), with the slice on screen marked. The user sees at a glance
where in the volume the model fires and where its explanation does; a click or a drag goes to
that slice. Hidden for single images. The values are the session's (``session.slices``): this
widget only paints them.
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


class SliceStrip(QWidget):
    """The strip: it paints the session's :class:`~viewer.state.slice_profile.SliceProfile`."""

    ROW = 10  # pixels per row

    def __init__(self, session: ViewerSession, parent: QWidget | None = None):
        super().__init__(parent)
        self.state, self.profile = session.state, session.slices
        self.setObjectName("slice_strip")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip(
            "Top: the model's probability of the target on each slice. Bottom: the selected map's "
            "strongest value there. Click or drag to go to a slice."
        )
        self.state.events.image.connect(self._on_image)
        self.state.events.frame.connect(lambda *_: self.update())
        self.profile.changed.connect(lambda: self.update())
        self._on_image(self.state.image)

    def sizeHint(self) -> QSize:
        return QSize(400, 2 * self.ROW + 6)

    def _on_image(self, image) -> None:
        self.setVisible(image is not None and image.n_frames > 1)
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
        rows = ((self.profile.probability, PROBABILITY), (self.profile.strength, MAP))
        for row, (values, colour) in enumerate(rows):
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
