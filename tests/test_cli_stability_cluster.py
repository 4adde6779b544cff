"""``saliency-viewer stability`` on a real Dask cluster (worker processes on loopback): the rows and
maps of the in-process run, and nothing lost or doubled when a worker is killed mid-run or the
client is killed and the run resumed."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import threading

import pytest

from tests.checkpoint_copies import three_checkpoints
from tests.plugins.cluster import kill_a_busy_worker, wait_until
from viewer.cli import main

distributed = pytest.importorskip("distributed")


def rows(out) -> list[dict]:
    """The rows without their timings (the only column that differs between two runs)."""
    with open(out / "stability.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def maps(out) -> dict:
    return {p.relative_to(out): p.read_bytes() for p in sorted((out / "maps").rglob("*.npy"))}


def stability_args(films, checkpoints, out, *extra) -> list[str]:
    return ["stability", str(films), "--model", str(checkpoints), "--methods", "gradcam,guided-backprop",
            "--shift", "2,-1", "--bootstrap", "50", "--quiet", "--device", "cpu", "--out", str(out),
            *extra]  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Six chest phantoms, a manifest of three checkpoints, and the in-process run over them."""
    folder = tmp_path_factory.mktemp("stability_cluster")
    assert main(["phantom", "cxr", "--n", "6", "--size", "256", "--seed", "41", "--out", str(folder)]) == 0
    checkpoints = three_checkpoints(folder)
    here = folder / "here"
    assert main(stability_args(folder / "dicom", checkpoints, here)) == 0
    return folder / "dicom", checkpoints, here


def test_two_workers_write_the_in_process_rows_and_maps(setup, tmp_path, capsys):
    films, checkpoints, here = setup
    out = tmp_path / "out"
    assert main(stability_args(films, checkpoints, out, "--workers", "2")) == 0
    assert "2 Dask workers; dashboard http" in capsys.readouterr().err
    assert len({r["image"] for r in rows(here)}) == 6
    assert rows(out) == rows(here)  # the same rows, in discovery order however they finished
    assert maps(out) == maps(here)  # written by the client from the workers' arrays, to the bit
    with open(out / "summary.csv", newline="") as a, open(here / "summary.csv", newline="") as b:
        drop = ("seconds",)
        assert [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(a)] == [
            {k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(b)
        ]


def _when_committed(out, count: int) -> None:
    """Waits until ``count`` films are in OUT/stability.csv."""
    wait_until(
        lambda: len({r["image"] for r in rows(out)}) if (out / "stability.csv").exists() else 0,
        count,
        "films",
    )


@pytest.mark.slow  # ~30 s each with a cluster's start-up; -m slow runs them
def test_a_worker_killed_mid_run_loses_and_doubles_nothing(setup, cluster, tmp_path):
    films, checkpoints, here = setup
    (scheduler, client), out = cluster, tmp_path / "out"
    client.wait_for_workers(2, timeout=120)
    result = {}
    args = stability_args(films, checkpoints, out, "--scheduler", scheduler.scheduler_address)
    run = threading.Thread(target=lambda: result.setdefault("code", main(args)))
    run.start()
    _when_committed(out, 1)
    kill_a_busy_worker(client)
    run.join(timeout=600)
    assert result["code"] == 0
    done = [r["image"] for r in rows(out)]
    per_film = len(rows(here)) // 6
    assert all(done.count(name) == per_film for name in set(done))  # no film twice, none cut short
    problems = (out / "problems.csv").read_text().splitlines()[1:] if (out / "problems.csv").exists() else []
    assert {r["image"] for r in rows(here)} == set(done) | {p.split(",")[0] for p in problems}
    assert rows(out) == [r for r in rows(here) if r["image"] in done]
    assert maps(out) == {k: v for k, v in maps(here).items() if k.parts[1] in done}


@pytest.mark.slow  # ~30 s each with a cluster's start-up; -m slow runs them
def test_a_killed_client_is_resumed_without_redoing_a_film(setup, cluster, tmp_path):
    films, checkpoints, here = setup
    (scheduler, client), out = cluster, tmp_path / "out"
    client.wait_for_workers(2, timeout=120)  # a worker killed by the test before is back
    args = stability_args(films, checkpoints, out, "--scheduler", scheduler.scheduler_address)
    child = subprocess.Popen([sys.executable, "-c", f"from viewer.cli import main; main({args!r})"])
    try:
        _when_committed(out, 2)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    first = sorted({r["image"] for r in rows(out)})[0]
    kept = next((out / "maps" / first).rglob("*.npy"))
    stamp = kept.stat().st_mtime_ns
    assert main([*args, "--resume"]) == 0
    assert rows(out) == rows(here)  # every film once, in discovery order
    assert maps(out) == maps(here)
    assert kept.stat().st_mtime_ns == stamp  # committed before: not redone


def test_an_unreachable_scheduler_is_named_before_anything_is_written(setup, tmp_path, capsys):
    films, checkpoints, _ = setup
    out = tmp_path / "out"
    assert main(stability_args(films, checkpoints, out, "--scheduler", "tcp://127.0.0.1:9")) == 2
    err = capsys.readouterr().err
    assert "cannot reach the Dask scheduler tcp://127.0.0.1:9" in err and "Traceback" not in err
    assert not out.exists()
