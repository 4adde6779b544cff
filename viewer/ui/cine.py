"""Cine: play the slices of a series one after another at a chosen rate, looping, as radiologists
page through a head CT. Every view follows the slice (the single view, the MPR's axial plane,
the predictions); the rate is a preference.

A ``QTimer`` on the GUI thread steps :class:`ViewerState`'s frame; Qt does not queue the ticks a
busy loop missed, so a slow machine plays at the rate it can and never falls behind. Opening
another image stops it.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QSettings, QTimer, Signal

from viewer.state import ViewerState

RATES = (2, 4, 6, 8, 10, 15, 20, 25, 30)  # frames per second to choose from


class Cine(QObject):
    """Plays ``state``'s slices; ``playing`` and ``rate_changed`` tell the window what to show."""

    playing = Signal(bool)
    rate_changed = Signal(int)

    def __init__(self, state: ViewerState, settings: QSettings | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.state, self.settings = state, settings
        saved = int(settings.value("cine/fps", 10)) if settings is not None else 10
        self.fps = min(RATES, key=lambda r: abs(r - saved))
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._step)
        state.events.image.connect(lambda _image: self.stop())

    @property
    def is_playing(self) -> bool:
        return self.timer.isActive()

    def toggle(self) -> None:
        self.stop() if self.is_playing else self.play()

    def play(self) -> None:
        image = self.state.image
        if image is None or image.n_frames < 2:
            return
        self.timer.start(round(1000 / self.fps))
        self.playing.emit(True)

    def stop(self) -> None:
        if self.is_playing:
            self.timer.stop()
            self.playing.emit(False)

    def faster(self) -> None:
        self._set_rate(+1)

    def slower(self) -> None:
        self._set_rate(-1)

    def _set_rate(self, step: int) -> None:
        index = max(0, min(len(RATES) - 1, RATES.index(self.fps) + step))
        self.fps = RATES[index]
        if self.settings is not None:
            self.settings.setValue("cine/fps", self.fps)
        if self.is_playing:
            self.timer.setInterval(round(1000 / self.fps))
        self.rate_changed.emit(self.fps)

    def _step(self) -> None:
        state = self.state
        state.set_frame((state.frame + 1) % state.image.n_frames)  # loops back to the first
