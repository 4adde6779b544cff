"""Decode untrusted compressed pixel data in disposable worker processes.

Native JPEG/JPEG 2000/JPEG-LS decoders can abort the whole process on corrupt data (libjpeg raises
SIGABRT on damaged entropy-coded bytes). Each worker (:mod:`viewer.io.decode_worker`) decodes one
file at a time; if it dies or hangs, only that file is reported, the worker is replaced and the
rest of the folder goes on.

The same workers fill COCO annotation polygons with pycocotools (a :class:`PolygonJob`), whose C
code crashes on hostile coordinates as the image decoders do on hostile pixel data.

Workers are plain subprocesses, not ``multiprocessing`` children: they never re-import the
caller's ``__main__`` (scripts without a main guard and notebooks work), and they start the same
way from a source checkout, an installed package and a frozen bundle.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from viewer.io.decode_worker import POLYGON_JOB, array_from, read_message, write_message
from viewer.io.errors import Problem
from viewer.io.image import VoiLut
from viewer.io.pixel_decode import Decoded
from viewer.io.sources import FileRef

# A worker that takes longer than this on one file is stopped and the file reported.
DEFAULT_TIMEOUT_S = 120.0
# Frozen bundles run the worker through the app's own executable with this flag.
FROZEN_WORKER_FLAG = "--decode-worker"


@dataclass(frozen=True)
class PolygonJob:
    """Fill the polygons of an annotation file's regions on one ``rows x cols`` image: per item (a
    region), the flat ``x, y`` lists of its polygons, checked by the caller."""

    source: str  # the annotation file, named in a problem
    rows: int
    cols: int
    items: list[list[list[float]]]

    def __str__(self) -> str:
        return self.source

    def request(self) -> dict:
        return {"job": POLYGON_JOB, "rows": self.rows, "cols": self.cols, "items": self.items}


@dataclass(frozen=True)
class PolygonMasks:
    """A :class:`PolygonJob`'s masks, one per item: ``(top, left, pixels)`` of its bounding box, or
    the reason it could not be filled."""

    masks: tuple[tuple[int, int, np.ndarray] | str, ...]


Job = FileRef | PolygonJob
Result = Decoded | PolygonMasks | Problem


def worker_command() -> list[str]:
    if getattr(sys, "frozen", False):
        return [sys.executable, FROZEN_WORKER_FLAG]
    return [sys.executable, "-m", "viewer.io.decode_worker"]


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    # One decode per worker at a time: keep native thread pools from oversubscribing the cores.
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


class _Worker:
    """One decoder subprocess, with a thread that reads its replies into the pool's queue."""

    def __init__(self, replies: queue.Queue):
        self.process = subprocess.Popen(
            worker_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_worker_env(),
            # A Ctrl+C in a terminal goes to the parent, which stops the workers itself.
            start_new_session=sys.platform != "win32",
        )
        self.job: tuple[int, Job] | None = None
        self.deadline = 0.0
        self._replies = replies
        threading.Thread(target=self._read_replies, daemon=True, name="decoder-replies").start()

    def send(self, index: int, ref: Job, timeout_s: float) -> None:
        self.job = (index, ref)
        self.deadline = time.monotonic() + timeout_s
        request = ref.request() if isinstance(ref, PolygonJob) else {"path": ref.path, "member": ref.member}
        write_message(self.process.stdin, json.dumps(request).encode())

    def _read_replies(self) -> None:
        stream = self.process.stdout
        while True:
            try:
                header = json.loads(read_message(stream))
                if "error" in header:
                    result: Result | str = header["error"]
                elif "polygons" in header:
                    result = PolygonMasks(tuple(_polygon_mask(entry, stream) for entry in header["polygons"]))
                else:
                    pixels = array_from(header["pixels"], read_message(stream))
                    luts = tuple(
                        VoiLut(lut["first"], array_from(lut, read_message(stream)), lut["name"])
                        for lut in header["luts"]
                    )
                    result = Decoded(pixels, header["photometric"], luts, tuple(header["notes"]))
            except (EOFError, OSError, ValueError, KeyError, TypeError):
                self._replies.put((self, None))
                return
            self._replies.put((self, result))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


def _polygon_mask(entry: dict, stream) -> tuple[int, int, np.ndarray] | str:
    """One item of a polygon reply: its bit-packed bounding-box mask, read from ``stream``."""
    if "error" in entry:
        return str(entry["error"])
    height, width = (int(v) for v in entry["shape"])
    if height < 0 or width < 0:
        raise ValueError("a negative mask shape")
    bits = np.unpackbits(np.frombuffer(read_message(stream), np.uint8), count=height * width)
    return int(entry["top"]), int(entry["left"]), bits.astype(bool).reshape(height, width)


def _death_reason(process: subprocess.Popen, job: Job) -> str:
    code = process.poll()
    polygons = isinstance(job, PolygonJob)
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if polygons:
            return f"pycocotools crashed ({name}) filling this file's polygons; they are probably corrupt"
        return (
            f"the image decoder crashed ({name}) on this file's compressed pixel data; "
            "the data is probably corrupt"
        )
    if polygons:
        return f"pycocotools stopped unexpectedly (exit code {code}) filling this file's polygons"
    return f"the image decoder stopped unexpectedly (exit code {code}); the pixel data is probably corrupt"


class DecoderPool:
    """A small pool of decoder processes that survives decoder crashes and hangs."""

    def __init__(self, workers: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.n_workers = workers or max(1, min(2, os.cpu_count() or 1))
        self.timeout_s = timeout_s
        self._workers: list[_Worker] = []
        self._replies: queue.Queue = queue.Queue()
        self._lock = threading.Lock()

    def decode(
        self,
        refs: Sequence[Job],
        on_result: Callable[[int, Result], None],
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        """Decode each file (or fill each :class:`PolygonJob`); ``on_result(index, Decoded |
        PolygonMasks | Problem)`` per job, in completion order.

        Returns when all are done, or soon after ``cancelled()`` becomes true.
        """
        with self._lock:
            pending = list(enumerate(refs))[::-1]
            self._workers = [w for w in self._workers if w.process.poll() is None]
            while len(self._workers) < min(self.n_workers, len(refs)):
                self._workers.append(_Worker(self._replies))
            while pending or any(w.job for w in self._workers):
                if cancelled():
                    for worker in [w for w in self._workers if w.job]:
                        self._replace(worker)
                    return
                for worker in self._workers:
                    if worker.job is None and pending:
                        index, ref = pending.pop()
                        try:
                            worker.send(index, ref, self.timeout_s)
                        except OSError:  # it died while idle: retry the file on a fresh one
                            pending.append((index, ref))
                            self._replace(worker)
                self._collect(on_result)

    def _collect(self, on_result: Callable[[int, Result], None]) -> None:
        try:
            worker, result = self._replies.get(timeout=0.25)
        except queue.Empty:
            worker, result = None, None
        if worker is not None and worker in self._workers and worker.job is not None:
            index, ref = worker.job
            if result is None:  # the pipe closed: the worker died mid-file
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.process.wait(timeout=5)
                on_result(index, Problem(str(ref), _death_reason(worker.process, ref)))
                self._replace(worker)
            else:
                worker.job = None
                if isinstance(result, str):
                    doing = "fill polygons" if isinstance(ref, PolygonJob) else "decode pixel data"
                    result = Problem(str(ref), f"cannot {doing}: {result}")
                on_result(index, result)
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.job is not None and now > worker.deadline:
                index, ref = worker.job
                on_result(
                    index,
                    Problem(str(ref), f"decoding took longer than {self.timeout_s:g} s and was stopped"),
                )
                self._replace(worker)

    def decode_one(self, ref: Job) -> Result:
        out: list[Result] = []
        self.decode([ref], lambda _i, result: out.append(result))
        return out[0]

    def shutdown(self) -> None:
        with self._lock:
            for worker in self._workers:
                worker.stop()
            self._workers.clear()

    def _replace(self, worker: _Worker) -> None:
        worker.job = None
        worker.stop()
        self._workers[self._workers.index(worker)] = _Worker(self._replies)


_pool: DecoderPool | None = None
_pool_lock = threading.Lock()


def shared_pool() -> DecoderPool:
    """The process-wide decoder pool, started on first use and stopped at exit."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = DecoderPool()
            atexit.register(shutdown)
        return _pool


def shutdown() -> None:
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown()
            _pool = None


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "FROZEN_WORKER_FLAG",
    "DecoderPool",
    "PolygonJob",
    "PolygonMasks",
    "shared_pool",
    "shutdown",
    "worker_command",
]
