"""``saliency-viewer explain`` on a real Dask cluster (worker processes on loopback): the maps of
the in-process run to the bit, and nothing lost or doubled when a worker or the client is killed
mid-run."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import threading

import pytest

from tests.plugins.cluster import kill_a_busy_worker, wait_until
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


def _when_committed(out, count: int) -> None:
    """Waits until ``count`` studies are in OUT/metrics.csv."""
    wait_until(
        lambda: len({r["image"] for r in rows(out)}) if (out / "metrics.csv").exists() else 0,
        count,
        "studies",
    )


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
    kill_a_busy_worker(client)
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
