"""Run the command line as an attacker's victim would: in a subprocess with a memory cap, a time
budget and a sentinel folder, and check that it refused the input the way a user can act on.

Each security case builds its attack input itself, runs ``saliency-viewer ...`` through
:func:`run_cli` and asserts with :func:`assert_refused` (or :func:`assert_clean` where the input is
legitimate but hostile in size): exit status 1 or 2 (never a signal), a one-line reason naming the
input, no Python traceback, within the time budget, and a peak memory well under the cap.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The address-space cap of every child: a bomb fails an allocation here instead of taking the CI
# machine down. torch's CUDA build maps a few GB of address space at import, hence not lower.
ADDRESS_SPACE_CAP = 12 * 1024**3

# The time budget of an in-process case: long enough for a loaded CI machine never to trip it on
# a case that works, short enough to catch what the attacks did (hangs, quadratic listings that
# ran for minutes). What a case proves is in its other assertions, never in a tight timing.
HANG_S = 60.0

# The child writes its own peak into PEAK_FILE as it exits (after the decoder workers are reaped:
# this handler is registered first, so it runs last). ``wait4``'s figure cannot be used alone: on
# Linux a child started by vfork/posix_spawn inherits, at exec, the high-water mark of the parent
# it was started from, so it reads at least the pytest process's own size (1.5 GB for a child
# that does nothing, from a parent holding 1.5 GB). It stays the figure for a child that is killed.
_CHILD = """
import atexit, os, resource, sys
def _peak():
    with open('/proc/self/status') as status:
        own = next((int(l.split()[1]) for l in status if l.startswith('VmHWM:')), 0)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(os.environ['PEAK_FILE'], 'w') as out:
        out.write(str(max(own, workers) * 1024))
if os.path.exists('/proc/self/status'):
    atexit.register(_peak)
cap = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
from viewer.launch import main
sys.exit(main(sys.argv[2:]))
"""


@dataclass
class Outcome:
    """What a child run did: its exit status, output, peak resident memory and wall time."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    peak_rss_bytes: int
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        return (
            f"saliency-viewer {' '.join(self.args)} -> exit {self.returncode}, "
            f"{self.peak_rss_bytes / 1e6:.0f} MB peak, {self.seconds:.1f} s\n"
            f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"
        )


def run_cli(
    args: list[str],
    *,
    timeout: float = 120.0,
    cap: int = ADDRESS_SPACE_CAP,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Outcome:
    """``saliency-viewer ARGS`` in a child process under ``RLIMIT_AS = cap``. Its peak resident
    memory is the larger of its own high-water mark and its reaped children's (the decoder
    workers), as it reports them at exit; ``wait4``'s figure if it was killed (see ``_CHILD``)."""
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), child_env.get("PYTHONPATH")) if p)
    child_env.setdefault("QT_QPA_PLATFORM", "offscreen")
    child_env["PYTHONIOENCODING"] = "utf-8"
    peak_file = Path(tempfile.mkdtemp()) / "peak"
    child_env["PEAK_FILE"] = str(peak_file)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(cap), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=cwd,
            env=child_env,
        )
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        peak = int(peak_file.read_text()) if peak_file.is_file() else usage.ru_maxrss * 1024
        shutil.rmtree(peak_file.parent, ignore_errors=True)
        outcome = Outcome(
            list(args),
            process.returncode,
            out.read().decode("utf-8", errors="replace"),
            err.read().decode("utf-8", errors="replace"),
            peak,
            seconds,
        )
    if seconds >= timeout:
        raise AssertionError(f"ran past its {timeout:.0f} s budget: {outcome.describe()}")
    return outcome


def assert_refused(
    outcome: Outcome,
    *words: str,
    statuses: tuple[int, ...] = (1, 2),
    max_seconds: float = 60.0,
    max_rss: int = 3 * 1024**3,
) -> str:
    """The run ended with one of ``statuses`` (not a signal), printed no traceback, stayed within
    its time and memory budgets, and printed a line holding every one of ``words`` (case-blind).
    Returns that line."""
    detail = outcome.describe()
    assert outcome.returncode >= 0, f"killed by signal {-outcome.returncode}\n{detail}"
    assert outcome.returncode in statuses, detail
    assert "Traceback (most recent call last)" not in outcome.output, detail
    assert outcome.seconds <= max_seconds, detail
    assert outcome.peak_rss_bytes <= max_rss, detail
    lines = [line for line in outcome.output.splitlines() if all(w.lower() in line.lower() for w in words)]
    assert lines, f"no line names {words}\n{detail}"
    return lines[0]


def assert_clean(outcome: Outcome, *, max_seconds: float = 60.0, max_rss: int = 3 * 1024**3) -> None:
    """The run did not crash: no signal, no traceback, within budgets (any exit status)."""
    detail = outcome.describe()
    assert outcome.returncode >= 0, f"killed by signal {-outcome.returncode}\n{detail}"
    assert "Traceback (most recent call last)" not in outcome.output, detail
    assert outcome.seconds <= max_seconds, detail
    assert outcome.peak_rss_bytes <= max_rss, detail
