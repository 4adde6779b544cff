"""Which event-loop stalls the program caused, and which the machine did (Linux).

A heartbeat (``tests/ui/heartbeat.py``) sees how late each tick came, but on a shared machine a
tick can be late because other processes held the CPUs: the GUI thread was ready to run and the
kernel ran something else. Linux counts, per thread, the time it spent waiting for a CPU while
runnable (``/proc/<pid>/task/<tid>/schedstat``, second field). This heartbeat also reads, at every
tick, that wait for the GUI thread and for the worker thread (which, when the kernel holds it off
a CPU while it holds the GIL, keeps the GUI thread waiting too), and the GUI thread's own CPU time.

A stall's *blocked* part is its length less those CPU waits: what the program's own work did
(work on the GUI thread, or the worker holding the GIL). On an idle machine the waits are near
zero and blocked equals the stall; under load they take away only time the kernel gave to others.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from tests.ui.heartbeat import Heartbeat

WORKER = "saliency-worker"  # the JobRunner's QThread (Qt names the OS thread after it)


def _tid_named(name: str) -> int | None:
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == name[:15]:
                return int(task.name)
        except OSError:
            continue
    return None


def _wait_ns(path: str | None) -> int:
    if path is None:
        return 0
    try:
        with open(path) as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def available() -> bool:
    return Path(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/schedstat").exists()


class AttributedHeartbeat(Heartbeat):
    """A heartbeat that records, per tick, the CPU waits of the GUI and worker threads and the GUI
    thread's CPU time (see the module's text)."""

    def __init__(self, interval_ms: int = 5, worker: str = WORKER):
        super().__init__(interval_ms)
        self.worker = worker
        self.samples: list[tuple[float, float, float]] = []  # (gui cpu s, gui wait s, worker wait s)

    def start(self) -> None:
        pid = os.getpid()
        self._gui = f"/proc/{pid}/task/{threading.get_native_id()}/schedstat"
        tid = _tid_named(self.worker)
        self._worker = f"/proc/{pid}/task/{tid}/schedstat" if tid is not None else None
        self.samples = [self._sample()]
        super().start()

    def _sample(self) -> tuple[float, float, float]:
        return (time.thread_time(), _wait_ns(self._gui) / 1e9, _wait_ns(self._worker) / 1e9)

    def _tick(self) -> None:
        super()._tick()
        self.samples.append(self._sample())

    def attributed(self) -> dict[str, np.ndarray]:
        """Per gap between ticks, in ms: the stall, the GUI thread's CPU time, the CPU waits that
        excuse it, and the blocked part (the stall less those waits, never below zero).

        The GUI thread's own wait for a CPU excuses itself. The worker's counts only up to the
        time the GUI thread was neither on a CPU nor waiting for one (asleep: on the GIL, or on
        its timer), the only time in which a worker held off a CPU can hold the GUI thread up."""
        n = min(len(self.ticks), len(self.samples))
        gap = np.diff(np.array(self.ticks[:n])) * 1000
        stall = np.clip(gap - self.interval * 1000, 0, None)
        s = np.diff(np.array(self.samples[:n]), axis=0) * 1000
        gui_cpu, gui_wait, worker_wait = s[:, 0], s[:, 1], s[:, 2]
        asleep = np.clip(gap - gui_cpu - gui_wait, 0, None)
        waits = gui_wait + np.minimum(worker_wait, asleep)
        blocked = np.clip(stall - waits, 0, None)
        return {"stall": stall, "gui_cpu": gui_cpu, "waits": waits, "blocked": blocked}

    def report(self, top: int = 5) -> str:
        a = self.attributed()
        order = np.argsort(-a["stall"])[:top]
        rows = [
            f"{a['stall'][i]:.1f} ms (GUI thread on CPU {a['gui_cpu'][i]:.1f}, waiting for a CPU "
            f"{a['waits'][i]:.1f}, blocked {a['blocked'][i]:.1f})"
            for i in order
        ]
        return "worst stalls: " + "; ".join(rows)


class MachineLoad:
    """CPU time other processes used over a span, in cores (from ``/proc/stat`` less this process)."""

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float]:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        busy = sum(int(v) for i, v in enumerate(fields) if i not in (3, 4))  # less idle and iowait
        times = os.times()
        tick = os.sysconf("SC_CLK_TCK")
        return busy / tick, times.user + times.system, time.monotonic()

    def others(self) -> float:
        busy, ours, now = self._read()
        busy0, ours0, start = self._start
        return max(0.0, (busy - busy0) - (ours - ours0)) / max(now - start, 1e-6)
