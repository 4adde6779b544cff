"""The batch subcommands' one-line progress bar on the terminal. Its text (study names, steps) is
made printable; only its own carriage returns reach the terminal as controls
(``viewer.cli.terminal.write_control``)."""

from __future__ import annotations

import sys
import threading
import time

from viewer.cli.terminal import write_control
from viewer.io.safe_text import printable


class Progress:
    """A one-line progress bar on the terminal (stderr), redrawn at most ten times a second."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.last = 0.0
        self.lock = threading.Lock()

    def show(self, text: str, fraction: float) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.1 and fraction < 1):
            return
        self.last = now
        filled = int(fraction * 30)
        with self.lock:
            bar = f"{printable(text)[:50]:<50} [{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%}"
            write_control(sys.stderr, "\r" + bar)
            sys.stderr.flush()

    def show_step(self, head: str, step: str, fraction: float) -> None:
        self.show(f"{head} {step}", fraction)

    def count(self, done: int, failed: int, total: int) -> None:
        """Studies done and failed of ``total``, and how many a second since the first."""
        now = time.monotonic()
        self.started = getattr(self, "started", now)
        rate = done / (now - self.started) if now > self.started else 0.0
        self.show(f"{done}/{total} done, {failed} failed, {rate:.2f}/s", (done + failed) / max(total, 1))

    def done(self) -> None:
        if self.enabled:
            write_control(sys.stderr, "\r" + " " * 90 + "\r")
