"""Benchmark: ``saliency-viewer explain`` in one process against the same run on a local Dask
cluster, in the same run, over chest phantoms generated for it.

    python tests/perf/bench_scale.py [--studies 2000] [--overhead-studies 200] [--size 224]
                                     [--methods gradcam] [--film-size 2320 --films 2]

Runs, each a fresh ``saliency-viewer explain`` process, its process tree sampled every 0.2 s:
  A. in-process, torch on every core;   B. in-process, one torch thread;
  C. ``--workers 1`` (one torch thread); D. ``--workers 2`` (one torch thread each).
Prints studies/s of A and D and their ratio, the Dask path's overhead per study ((C - B) per
study, with the time to the first committed study, cluster start-up and model loading, apart),
peak memory of the client and of each worker, and their memory after the first tenth of the run
against the end (flat means no growth with the number of studies). Then the cost of one
CheXpert-sized film (``--film-size`` square, the viewer's default methods) on one torch
thread (the second film's time: the first pays start-up), and what
50,000 of them cost on 1, 2, 8 and 32 such workers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "import sys; from viewer.cli import main; sys.exit(main(sys.argv[1:]))"]


class TreeSampler:
    """Peak RSS of a process and of each of its descendants, and the RSS once ``mark()`` is called."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.peak: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.marked: dict[int, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                tree = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            for p in tree:
                try:
                    rss = p.memory_info().rss
                    self.names.setdefault(p.pid, " ".join(p.cmdline()[-3:]))
                except psutil.Error:
                    continue
                self.peak[p.pid] = max(self.peak.get(p.pid, 0), rss)
            time.sleep(0.2)

    def mark(self) -> None:
        self.marked = dict(self.peak)

    def workers(self) -> list[int]:
        """The Dask worker processes: those that loaded torch (the nannies stay small)."""
        return [pid for pid in self.peak if pid != self.root.pid and self.peak[pid] > 300 << 20]


def committed(out: Path) -> int:
    try:
        return max(0, (out / "metrics.csv").read_text().count("\n") - 1)
    except OSError:
        return 0


def run(inputs: Path, out: Path, methods: str, rows_per_study: int, studies: int, extra=(), threads=None):
    """One explain run: (seconds, seconds to the first committed study, seconds from the first
    to the last, sampler); the last part leaves out start-up and shutting the cluster down."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if threads:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    args = [
        "explain",
        str(inputs),
        "--model",
        "cxr_resnet18",
        "--methods",
        methods,
        "--steps",
        "0",
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]
    start = time.perf_counter()
    child = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = TreeSampler(child.pid)
    first = last = None
    while child.poll() is None:
        done = committed(out) // rows_per_study
        if first is None and done >= 1:
            first = time.perf_counter() - start
        if last is None and done >= studies:
            last = time.perf_counter() - start
        if not sampler.marked and done >= max(1, studies // 10):
            sampler.mark()
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    sampler.stop.set()
    if child.returncode != 0:
        raise SystemExit(f"explain {' '.join(extra)} failed: {child.stderr.read().decode()[-2000:]}")
    assert committed(out) == studies * rows_per_study, (committed(out), studies)
    first = first or seconds
    return seconds, first, (last or seconds) - first, sampler


def phantoms(folder: Path, n: int, size: int) -> Path:
    from viewer.cli import main

    assert (
        main(["phantom", "cxr", "--n", str(n), "--size", str(size), "--seed", "9", "--out", str(folder)]) == 0
    )
    return folder / "dicom"


def mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--overhead-studies", type=int, default=200)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--methods", default="gradcam")
    parser.add_argument("--film-size", type=int, default=2320)
    parser.add_argument("--films", type=int, default=2, help="CheXpert-sized films timed (0 skips)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    rows_per_study = len(args.methods.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        many = phantoms(tmp / "many", args.studies, args.size)
        few = phantoms(tmp / "few", args.overhead_studies, args.size)
        print(
            f"generated {args.studies} + {args.overhead_studies} phantoms of {args.size} px in "
            f"{time.perf_counter() - t:.0f} s; methods {args.methods}, steps 0"
        )
        n, m = args.studies, args.overhead_studies
        a = run(many, tmp / "a", args.methods, rows_per_study, n)
        d = run(many, tmp / "d", args.methods, rows_per_study, n, ["--workers", "2"])
        b = run(few, tmp / "b", args.methods, rows_per_study, m, threads=1)
        c = run(few, tmp / "c", args.methods, rows_per_study, m, ["--workers", "1"])
        print(
            f"\n{n} studies, wall clock: in-process (torch on {os.cpu_count()} cores) {a[0]:.0f} s, "
            f"--workers 2 {d[0]:.0f} s (with start-up and shutdown); steady state, first study to "
            f"last: {(n - 1) / a[2]:.2f}/s and {(n - 1) / d[2]:.2f}/s, ratio {a[2] / d[2]:.2f}x"
        )
        per_b, per_c = b[2] / (m - 1), c[2] / (m - 1)
        print(
            f"{m} studies, one torch thread, steady state: in-process {per_b * 1000:.0f} ms/study, "
            f"--workers 1 {per_c * 1000:.0f} ms/study: Dask overhead {(per_c - per_b) * 1000:+.0f} "
            f"ms/study; first study after {b[1]:.1f} s and {c[1]:.1f} s (cluster start-up, model load)"
        )
        for label, (*_, sampler) in (("in-process", a), ("--workers 2", d)):
            root = sampler.root.pid
            print(
                f"peak memory, {label}: client {mib(sampler.peak[root])} "
                f"(after the first tenth {mib(sampler.marked.get(root, 0))})",
                end="",
            )
            for pid in sampler.workers():
                print(
                    f"; worker {mib(sampler.peak[pid])} (first tenth {mib(sampler.marked.get(pid, 0))})",
                    end="",
                )
            print()
        if args.films:
            big = phantoms(tmp / "big", args.films, args.film_size)
            from viewer.explain import DEFAULT_METHODS

            default = ",".join(DEFAULT_METHODS)
            *_, between, _ = run(big, tmp / "e", default, len(DEFAULT_METHODS), args.films, threads=1)
            per = between / max(args.films - 1, 1)
            print(
                f"\none {args.film_size} x {args.film_size} film, the viewer's default methods ({default}), "
                f"one torch thread: {per:.1f} s"
            )
            overhead = per_c - per_b
            for workers in (1, 2, 8, 32):
                total = 50_000 * (per + overhead) / workers
                print(f"  50,000 films on {workers:>2} such workers: {total / 3600:.1f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
