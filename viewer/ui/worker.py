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

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

from viewer.state.runner import Job, Lanes
from viewer.state.runner import execute as run_job

__all__ = ["Job", "JobRunner", "Worker"]

_SWITCH_INTERVAL_S = 0.001


class Worker(QObject):
    """Runs jobs one at a time in its own thread."""

    result = Signal(int, str, object)  # job id, kind, payload
    progressed = Signal(int, str, float)  # job id, step, fraction
    finished = Signal(int, str)  # job id, "done" | "cancelled" | "failed: <reason>"

    @Slot(object)
    def execute(self, job: Job) -> None:
        job._emit = self.result.emit
        job._progress = self.progressed.emit
        self.finished.emit(job.id, run_job(job))


class JobRunner(QObject):
    """GUI-side owner of the worker thread. Lives in the GUI thread, so the worker's signals reach
    its slots there; it re-emits only results of jobs that are still current."""

    _submit = Signal(object)
    result = Signal(object, str, object)  # job, kind, payload
    progressed = Signal(object, str, float)
    finished = Signal(object, str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._jobs: dict[int, Job] = {}
        self.lanes = Lanes()
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
        self.lanes.make_current(job)
        job.id = next(self._ids)
        self._jobs[job.id] = job
        self._submit.emit(job)
        return job

    def cancel(self, lane: str | None = None) -> None:
        """Cancel the current job of ``lane`` (every lane if None); it stops at its next check."""
        self.lanes.cancel(lane)

    def current(self, lane: str) -> Job | None:
        return self.lanes.current(lane)

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
            if job.on_event is not None:
                job.on_event(kind, payload)
            self.result.emit(job, kind, payload)

    @Slot(int, str, float)
    def _on_progress(self, job_id: int, step: str, fraction: float) -> None:
        job = self._live(job_id)
        if job is not None:
            if job.on_progress is not None:
                job.on_progress(step, fraction)
            self.progressed.emit(job, step, fraction)

    @Slot(int, str)
    def _on_finished(self, job_id: int, status: str) -> None:
        job = self._jobs.pop(job_id, None)
        if job is None:
            return
        self.lanes.finished(job)
        status = "cancelled" if job.cancelled and status == "done" else status
        if job.on_done is not None:
            job.on_done(status)
        self.finished.emit(job, status)

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Cancel everything and stop the thread (called when the window closes)."""
        self.cancel()
        if self._thread.isRunning():
            self._thread.quit()
            self._thread.wait(timeout_ms)
