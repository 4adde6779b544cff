"""Background work as jobs in lanes, "latest request wins", behind a small runner interface.

The session submits a :class:`Job` per request and never waits for it. A runner executes jobs one
at a time, in the order submitted; submitting cancels the previous job of the same lane (a new
image cancels the stale load, a new target the stale explanation). Results come back through the
job's callbacks on the thread that owns the session: the Qt ``JobRunner`` (``viewer.ui.worker``)
runs jobs on a QThread and queues their callbacks onto the GUI's event loop; :class:`InlineRunner`
runs them at once on the calling thread, for the CLI and the session's unit tests.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from viewer.explain.context import Cancelled
from viewer.explain.engine import UnsupportedMethod
from viewer.io.pacs.nodes import ConfigError, PacsError

# Failures whose message says all the user needs (a node, an operation, a reason): no traceback.
_SAID = (UnsupportedMethod, PacsError, ConfigError)


@dataclass(eq=False)
class Job:
    """A unit of background work: ``run(job)`` reports through ``job.emit(kind, payload)`` and
    ``job.progress(step, fraction)``; ``job.check()`` raises :class:`Cancelled` once superseded.

    ``on_event(kind, payload)``, ``on_progress(step, fraction)`` and ``on_done(status)`` (status
    ``"done"``, ``"cancelled"`` or ``"failed: <reason>"``) are called on the session's thread;
    events and progress of a job cancelled before they arrive are dropped, ``on_done`` always comes.
    """

    lane: str
    run: Callable[[Job], Any]
    description: str = ""
    on_event: Callable[[str, Any], None] | None = None
    on_progress: Callable[[str, float], None] | None = None
    on_done: Callable[[str], None] | None = None
    # What the job computes, so a repeated request is recognised and not started twice.
    request: tuple = ()
    id: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    # Set by the runner that executes the job: where emit() and progress() go.
    _emit: Callable[[int, str, Any], None] | None = field(default=None, repr=False)
    _progress: Callable[[int, str, float], None] | None = field(default=None, repr=False)

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled(self.description)

    def emit(self, kind: str, payload: object = None) -> None:
        if self._emit is not None and not self.cancel.is_set():
            self._emit(self.id, kind, payload)

    def progress(self, step: str, fraction: float) -> None:
        if self._progress is not None and not self.cancel.is_set():
            self._progress(self.id, step, float(fraction))


def route(owner: str, handlers: dict[str, Callable[[Any], None]]) -> Callable[[str, Any], None]:
    """A job's ``on_event``: each kind of result (``job.emit(kind, payload)``) to its handler in
    ``handlers``, a table a reader (and a linter) can follow; an unknown kind is a bug, named with
    ``owner`` (the part of the session whose job it was)."""

    def on_event(kind: str, payload: Any) -> None:
        if kind not in handlers:
            raise KeyError(f"no {owner} handler for a job's {kind!r} result (known: {', '.join(handlers)})")
        handlers[kind](payload)

    return on_event


def execute(job: Job) -> str:
    """Run ``job`` on this thread; its final status. A failure is reported, never raised: the
    runner goes on with the next job."""
    if job.cancelled:  # superseded while queued: skip it without starting
        return "cancelled"
    try:
        job.run(job)
    except Cancelled:
        return "cancelled"
    except _SAID as exc:  # not a bug: the message says what went wrong and what works
        return f"failed: {exc}"
    except Exception as exc:  # reported to the user; the traceback goes to stderr for a bug report
        import traceback

        traceback.print_exc()
        return f"failed: {exc}"
    return "cancelled" if job.cancelled else "done"


class Lanes:
    """Which job is current in each lane: the bookkeeping every runner shares. Making a job
    current cancels the previous one of its lane ("latest request wins")."""

    def __init__(self) -> None:
        self._current: dict[str, Job] = {}

    def make_current(self, job: Job) -> None:
        self.cancel(job.lane)
        self._current[job.lane] = job

    def cancel(self, lane: str | None = None) -> None:
        """Cancel the current job of ``lane`` (every lane if None); it stops at its next check."""
        for name, job in list(self._current.items()):
            if lane is None or name == lane:
                job.cancel.set()
                del self._current[name]

    def current(self, lane: str) -> Job | None:
        return self._current.get(lane)

    def finished(self, job: Job) -> None:
        if self._current.get(job.lane) is job:
            del self._current[job.lane]


class Runner(Protocol):
    """What the session needs from whoever runs its background work."""

    def submit(self, job: Job) -> Job: ...

    def cancel(self, lane: str | None = None) -> None: ...

    def current(self, lane: str) -> Job | None: ...

    @property
    def busy(self) -> bool: ...


class InlineRunner:
    """Runs jobs on the calling thread, one after another in the order submitted.

    A job submitted from a callback (a prediction asked for when an image arrives) is queued and
    runs after the current one, as on the Qt runner's single worker thread; ``submit`` returns
    once the queue is empty.
    """

    def __init__(self) -> None:
        self._queue: deque[Job] = deque()
        self.lanes = Lanes()
        self._ids = 0
        self._draining = False
        self.history: list[tuple[str, str]] = []  # (lane, status) of every job run, for tests

    def submit(self, job: Job) -> Job:
        self.lanes.make_current(job)
        self._ids += 1
        job.id = self._ids
        self._queue.append(job)
        if not self._draining:
            self._drain()
        return job

    def cancel(self, lane: str | None = None) -> None:
        self.lanes.cancel(lane)

    def current(self, lane: str) -> Job | None:
        return self.lanes.current(lane)

    @property
    def busy(self) -> bool:
        return bool(self._queue)

    def _drain(self) -> None:
        self._draining = True
        try:
            while self._queue:
                job = self._queue[0]
                job._emit = lambda _id, kind, payload, j=job: j.on_event and j.on_event(kind, payload)
                job._progress = lambda _id, step, f, j=job: j.on_progress and j.on_progress(step, f)
                status = execute(job)
                self._queue.popleft()
                self.lanes.finished(job)
                self.history.append((job.lane, status))
                if job.on_done is not None:
                    job.on_done(status)
        finally:
            self._draining = False
