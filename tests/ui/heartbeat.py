"""Measure how long the GUI thread's event loop goes without turning: a QTimer heartbeat."""

from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import QObject, QTimer


class Heartbeat(QObject):
    """Ticks every ``interval_ms``; a stall is how much later than due a tick arrived."""

    def __init__(self, interval_ms: int = 5):
        super().__init__()
        self.interval = interval_ms / 1000
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.ticks: list[float] = []

    def start(self) -> None:
        self.ticks = [time.perf_counter()]
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        self.ticks.append(time.perf_counter())

    def stalls_ms(self) -> np.ndarray:
        gaps = np.diff(np.array(self.ticks)) - self.interval
        return np.clip(gaps, 0, None) * 1000

    def summary(self) -> dict[str, float]:
        stalls = self.stalls_ms()
        return {
            "ticks": len(self.ticks),
            "max_ms": float(stalls.max()) if stalls.size else 0.0,
            "p99_ms": float(np.percentile(stalls, 99)) if stalls.size else 0.0,
            "median_ms": float(np.median(stalls)) if stalls.size else 0.0,
        }
