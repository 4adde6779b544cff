"""The measurements drawn on the image on screen (lengths, angles, regions), kept with their
values, saved to and loaded from a DICOM SR measurement report. No Qt.

A new image starts an empty book: measurements belong to the image they were drawn on.
"""

from __future__ import annotations

from pathlib import Path

from psygnal import Signal

from viewer.io.measurement_sr import read_measurement_report, write_measurement_report
from viewer.io.measurements import Measured, Measurement, MeasurementError, measure, on_acquired_slice
from viewer.io.mpr import Reformat
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
        measured = measure(self._placed(measurement), self.state.image)
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

    def _placed(self, measurement: Measurement) -> Measurement:
        """A measurement in an MPR plane that is an acquired slice becomes one of that slice, so
        the single view shows it too."""
        return (
            on_acquired_slice(measurement, Reformat.of(self.state.image))
            if measurement.plane
            else measurement
        )

    def on_frame(self, frame: int) -> list[Measured]:
        """The measurements of acquired slice ``frame``."""
        return [m for m in self.items if not m.measurement.plane and m.measurement.frame == frame]

    def in_plane(self, plane: str, index: int, frame: int | None = None) -> list[Measured]:
        """The measurements drawn on MPR ``plane`` ``index``, and those of acquired slice
        ``frame`` where the plane is that slice pixel for pixel."""
        drawn = [m for m in self.items if m.measurement.plane == plane and m.measurement.frame == index]
        return drawn + (self.on_frame(frame) if frame is not None else [])

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
        self.items.extend(measure(self._placed(m), image) for m in found)
        self.changed.emit()
        return len(found)
