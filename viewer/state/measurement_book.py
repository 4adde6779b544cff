"""The measurements drawn on the image on screen (lengths, angles, regions), kept with their
values, saved to and loaded from a DICOM SR measurement report. No Qt.

A new image starts an empty book: measurements belong to the image they were drawn on.
"""

from __future__ import annotations

from pathlib import Path

from psygnal import Signal

from viewer.io.measurement_sr import read_measurement_report, write_measurement_report
from viewer.io.measurements import Measured, Measurement, MeasurementError, measure
from viewer.state.viewer_state import ViewerState


class MeasurementBook:
    """``items`` in drawing order; ``changed`` after every change."""

    changed = Signal()

    def __init__(self, state: ViewerState) -> None:
        self.state = state
        self.items: list[Measured] = []
        state.events.image.connect(lambda _image: self.clear())

    def add(self, measurement: Measurement) -> Measured:
        """Measure and keep ``measurement``; :class:`MeasurementError` says why it cannot be."""
        if self.state.image is None:
            raise MeasurementError("open an image first")
        measured = measure(measurement, self.state.image)
        self.items.append(measured)
        self.changed.emit()
        return measured

    def remove(self, index: int) -> None:
        if 0 <= index < len(self.items):
            del self.items[index]
            self.changed.emit()

    def clear(self) -> None:
        if self.items:
            self.items = []
            self.changed.emit()

    def on_frame(self, frame: int) -> list[Measured]:
        return [m for m in self.items if m.measurement.frame == frame]

    def save(self, path: Path | str, *, anonymize: bool = True) -> Path:
        """The measurements as a TID 1500 report in the image's study (OSError, ValueError)."""
        return write_measurement_report(self.state.image, self.items, Path(path), anonymize=anonymize)

    def load(self, path: Path | str) -> int:
        """Add the measurements of a report that fall on the image on screen; how many."""
        image = self.state.image
        if image is None:
            raise MeasurementError("open the image the report is about first")
        found = read_measurement_report(path, image)
        if not found:
            raise MeasurementError(f"{Path(path).name}: no measurement on this image's frames")
        self.items.extend(measure(m, image) for m in found)
        self.changed.emit()
        return len(found)
