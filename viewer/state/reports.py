"""What the session tells the user besides the picture: status lines, progress, errors and
problems. One object that every part of :class:`~viewer.state.session.ViewerSession` reports
through, so the window listens in one place and a headless run reads ``errors``. No Qt."""

from __future__ import annotations

from psygnal import Signal


class Reports:
    """The session's voice. ``errors`` keeps every error for headless runs and tests."""

    message = Signal(str, int)  # a status line, shown for so many ms
    error = Signal(str)  # something went wrong, said so a user can act on it
    progress = Signal(str, str, float)  # lane ("open", "load", "explain"), step, fraction
    problems_found = Signal(list)  # Problems (files, annotations) to list
    problems_cleared = Signal()

    def __init__(self) -> None:
        self.errors: list[str] = []

    def report_error(self, message: str) -> None:
        self.errors.append(message)
        self.error.emit(message)

    def report_failure(self, what: str, status: str) -> None:
        """A job's ``on_done`` status: a failure becomes an error naming ``what`` failed."""
        if status.startswith("failed"):
            self.report_error(f"{what} failed: {status.removeprefix('failed: ')}")
