"""A local Dask cluster for the batch commands' cluster tests, a plugin of the root conftest:
``cluster`` (module scope) is a scheduler and two worker processes, each under a nanny that
restarts a killed one; and the two steps those tests share, waiting for commits and killing a
busy worker."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest


@pytest.fixture(scope="module")
def cluster():
    """``(LocalCluster, Client)``: a scheduler and two worker processes on loopback."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
        ) as local,
        distributed.Client(local) as client,
    ):
        yield local, client


def wait_until(committed: Callable[[], int], count: int, what: str, timeout: float = 300) -> None:
    """Waits until ``committed()`` (how many studies or films a run has committed) reaches ``count``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if committed() >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} {what} committed in {timeout} s")


def kill_a_busy_worker(client) -> None:
    """SIGKILL the first worker while it has work in flight: the scheduler gives that work to the
    other worker, and the nanny restarts the killed one."""
    victim = sorted(client.scheduler_info()["workers"])[0]
    assert client.processing(workers=[victim])[victim]  # it has work in flight
    pid = client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)
