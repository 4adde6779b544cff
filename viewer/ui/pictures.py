"""numpy arrays to and from QImage, in one place (thumbnails, exports, screenshots)."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage


def to_qimage(picture: np.ndarray) -> QImage:
    """A QImage owning a copy of a uint8 grey ``(rows, cols)`` or RGB ``(rows, cols, 3)`` array."""
    picture = np.ascontiguousarray(picture, dtype=np.uint8)
    fmt = QImage.Format.Format_Grayscale8 if picture.ndim == 2 else QImage.Format.Format_RGB888
    # copy(): the QImage would otherwise borrow the numpy buffer, which may be freed first.
    return QImage(picture.data, picture.shape[1], picture.shape[0], picture.strides[0], fmt).copy()


def from_qimage(image: QImage) -> np.ndarray:
    """The RGB uint8 ``(rows, cols, 3)`` pixels of any QImage."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    buffer = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes())
    return (
        buffer.reshape(image.height(), image.bytesPerLine())[:, : image.width() * 3]
        .reshape(image.height(), image.width(), 3)
        .copy()
    )
