"""Background work (loading, inference, explanation) on one QThread, "latest request wins".

The GUI submits a :class:`Job` per request. Submitting cancels the previous job of the same lane
(a new image cancels the stale load; a new target cancels the stale explanation), and results of a
cancelled or superseded job are dropped on arrival, so a late result can never overwrite a newer
one. The worker object lives in its thread; it emits results through signals whose receivers live
in the GUI thread, so Qt queues them onto the GUI's event loop.
"""

from __future__ import annotations

import itertools
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

from viewer.explain.context import Cancelled
from viewer.explain.engine import UnsupportedMethod

_SWITCH_INTERVAL_S = 0.001


@dataclass(eq=False)
class Job:
    """A unit of background work: ``run(job)`` executes in the worker thread and reports through
    ``job.emit(kind, payload)`` and ``job.progress(step, fraction)``; ``job.check()`` raises
    :class:`Cancelled` once the job is superseded."""

    lane: str
    run: Callable[[Job], Any]
    description: str = ""
    id: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    _worker: Worker | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled(self.description)

    def emit(self, kind: str, payload: object = None) -> None:
        if self._worker is not None and not self.cancel.is_set():
            self._worker.result.emit(self.id, kind, payload)

    def progress(self, step: str, fraction: float) -> None:
        if self._worker is not None and not self.cancel.is_set():
            self._worker.progressed.emit(self.id, step, float(fraction))


class Worker(QObject):
    """Runs jobs one at a time in its own thread."""

    started = Signal(int, str)  # job id, description
    result = Signal(int, str, object)  # job id, kind, payload
    progressed = Signal(int, str, float)  # job id, step, fraction
    finished = Signal(int, str)  # job id, "done" | "cancelled" | "failed: <reason>"

    @Slot(object)
    def execute(self, job: Job) -> None:
        if job.cancelled:  # superseded while queued: skip it without starting
            self.finished.emit(job.id, "cancelled")
            return
        job._worker = self
        self.started.emit(job.id, job.description)
        try:
            job.run(job)
        except Cancelled:
            self.finished.emit(job.id, "cancelled")
        except UnsupportedMethod as exc:  # the user's choice, not a bug: the message says what works
            self.finished.emit(job.id, f"failed: {exc}")
        except Exception as exc:  # reported to the user, the worker goes on
            traceback.print_exc()
            self.finished.emit(job.id, f"failed: {exc}")
        else:
            self.finished.emit(job.id, "cancelled" if job.cancelled else "done")


class JobRunner(QObject):
    """GUI-side owner of the worker thread. Lives in the GUI thread, so the worker's signals reach
    its slots there; it re-emits only results of jobs that are still current."""

    _submit = Signal(object)
    result = Signal(object, str, object)  # job, kind, payload
    progressed = Signal(object, str, float)
    finished = Signal(object, str)
    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._jobs: dict[int, Job] = {}
        self._current: dict[str, Job] = {}
        self._thread = QThread()
        self._thread.setObjectName("saliency-worker")
        self._worker = Worker()
        self._worker.moveToThread(self._thread)
        self._submit.connect(self._worker.execute)
        self._worker.result.connect(self._on_result)
        self._worker.progressed.connect(self._on_progress)
        self._worker.finished.connect(self._on_finished)
        self._thread.start()
        # The worker's Python code competes with the GUI thread for the GIL; a shorter switch
        # interval (5 ms by default) lets the event loop take it back sooner.
        sys.setswitchinterval(min(sys.getswitchinterval(), _SWITCH_INTERVAL_S))
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    def submit(self, job: Job) -> Job:
        """Queue ``job``, cancelling the previous job of its lane."""
        self.cancel(job.lane)
        job.id = next(self._ids)
        self._jobs[job.id] = job
        self._current[job.lane] = job
        was_busy = len(self._jobs) > 1
        self._submit.emit(job)
        if not was_busy:
            self.busy_changed.emit(True)
        return job

    def cancel(self, lane: str | None = None) -> None:
        """Cancel the current job of ``lane`` (every lane if None); it stops at its next check."""
        for name, job in list(self._current.items()):
            if lane is None or name == lane:
                job.cancel.set()
                del self._current[name]

    def current(self, lane: str) -> Job | None:
        return self._current.get(lane)

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    def _live(self, job_id: int) -> Job | None:
        job = self._jobs.get(job_id)
        return job if job is not None and not job.cancelled else None

    @Slot(int, str, object)
    def _on_result(self, job_id: int, kind: str, payload: object) -> None:
        job = self._live(job_id)
        if job is not None:
            self.result.emit(job, kind, payload)

    @Slot(int, str, float)
    def _on_progress(self, job_id: int, step: str, fraction: float) -> None:
        job = self._live(job_id)
        if job is not None:
            self.progressed.emit(job, step, fraction)

    @Slot(int, str)
    def _on_finished(self, job_id: int, status: str) -> None:
        job = self._jobs.pop(job_id, None)
        if job is None:
            return
        if self._current.get(job.lane) is job:
            del self._current[job.lane]
        self.finished.emit(job, "cancelled" if job.cancelled and status == "done" else status)
        if not self._jobs:
            self.busy_changed.emit(False)

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Cancel everything and stop the thread (called when the window closes)."""
        self.cancel()
        if self._thread.isRunning():
            self._thread.quit()
            self._thread.wait(timeout_ms)
