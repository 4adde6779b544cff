"""``saliency-viewer explain`` on a real Dask cluster (worker processes on loopback): the maps of
the in-process run to the bit, and nothing lost or doubled when a worker or the client is killed
mid-run."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from viewer.cli import main
from viewer.resources import resource_path

distributed = pytest.importorskip("distributed")

METHODS = "gradcam,guided-backprop"


def rows(out) -> list[dict]:
    with open(out / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def maps(out) -> dict:
    return {
        p.relative_to(out): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.suffix in (".npy", ".png") or p.name == "predictions.json"
    }


def explain_args(inputs, out, *extra) -> list[str]:
    return ["explain", *map(str, inputs), "--model", "cxr_resnet18", "--methods", METHODS,
            "--steps", "2", "--quiet", "--out", str(out), *extra]  # fmt: skip


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    """Eight fresh chest phantoms, and their in-process run."""
    folder = tmp_path_factory.mktemp("cluster_films")
    assert main(["phantom", "cxr", "--n", "8", "--size", "256", "--seed", "33", "--out", str(folder)]) == 0
    assert main(explain_args([folder / "dicom"], folder / "here")) == 0
    return [folder / "dicom"], folder / "here"


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """The bundled samples (two films and a 28-slice CT), and their in-process run."""
    folder = tmp_path_factory.mktemp("cluster_explain")
    inputs = [resource_path("samples", "dicom")]
    assert main(explain_args(inputs, folder / "here")) == 0
    return inputs, folder / "here"


def test_two_workers_write_the_in_process_maps_to_the_bit(studies, tmp_path, capsys):
    inputs, here = studies
    out = tmp_path / "out"
    assert main(explain_args(inputs, out, "--workers", "2")) == 0
    assert "2 Dask workers; dashboard http" in capsys.readouterr().err
    assert {r["image"] for r in rows(here)} == {"cxr_0001", "cxr_0002", "ct_0001"}
    assert rows(out) == rows(here)  # the same rows, in discovery order however they finished
    assert maps(out) == maps(here)
    assert not (out / ".partial").exists()


@pytest.fixture(scope="module")
def cluster():
    """A scheduler and two worker processes (each under a nanny, which restarts a killed one)."""
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield cluster, client


def _when_committed(out, count: int, timeout: float = 300) -> None:
    """Waits until ``count`` studies are in OUT/metrics.csv."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (out / "metrics.csv").exists() and len({r["image"] for r in rows(out)}) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} studies committed in {timeout} s")


def test_a_worker_killed_mid_run_loses_and_doubles_nothing(films, cluster, tmp_path):
    inputs, here = films
    (scheduler, client), out = cluster, tmp_path / "out"
    client.wait_for_workers(2, timeout=120)
    result = {}
    run = threading.Thread(
        target=lambda: result.setdefault(
            "code", main(explain_args(inputs, out, "--scheduler", scheduler.scheduler_address))
        )
    )
    run.start()
    _when_committed(out, 1)
    victim = sorted(client.scheduler_info()["workers"])[0]
    assert client.processing(workers=[victim])[victim]  # it has studies in flight
    pid = client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)  # its studies in flight go to the other worker; the nanny restarts it
    run.join(timeout=600)
    assert result["code"] == 0
    done = [r["image"] for r in rows(out)]
    assert len(done) == len(set((r["image"], r["method"]) for r in rows(out)))  # none twice
    problems = (out / "problems.csv").read_text().splitlines()[1:] if (out / "problems.csv").exists() else []
    assert {r["image"] for r in rows(here)} == set(done) | {p.split(",")[0] for p in problems}
    assert maps(out) == {k: v for k, v in maps(here).items() if k.parts[0] in done}


def test_a_killed_client_is_resumed_without_redoing_a_study(films, cluster, tmp_path):
    inputs, here = films
    (scheduler, client), out = cluster, tmp_path / "out"
    client.wait_for_workers(2, timeout=120)  # a worker killed by the test before is back
    args = explain_args(inputs, out, "--scheduler", scheduler.scheduler_address)
    child = subprocess.Popen([sys.executable, "-c", f"from viewer.cli import main; main({args!r})"])
    try:
        _when_committed(out, 2)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    before = {r["image"] for r in rows(out)}
    first = sorted(before)[0]
    stamp = (out / first / "gradcam.npy").stat().st_mtime_ns
    assert main([*args, "--resume"]) == 0
    assert rows(out) == rows(here)  # every study once, in discovery order
    assert maps(out) == maps(here)
    assert (out / first / "gradcam.npy").stat().st_mtime_ns == stamp  # committed before: not redone
    assert not (out / ".partial").exists()
