"""Studies run on a Dask cluster (``--workers N`` or ``--scheduler ADDRESS`` of ``explain`` and
``evaluate``).

The unit of work is one study. A task carries the study's ``SeriesInfo`` (paths, never pixels),
the model's manifest path and its fingerprint, never a pickled model: each worker process loads
the model once from the manifest, checks that its fingerprint equals the client's (a worker that
sees other weights under the same path refuses rather than mixing models), and keeps it.
Results stream back as they finish and only the client commits them, study by study, so a
killed client or worker loses at most the studies in flight, and ``--resume`` skips the rest.

At most two studies per worker are in flight, so memory stays flat over 10^5 studies. A study
that fails (a bad file, a model that will not load there) is tried once more on another worker,
then reported with its reason, and the run goes on; the tasks of a worker that dies are given to
the others by the scheduler (``distributed.scheduler.allowed-failures`` times, then reported).
Inputs, the manifest and annotation files must be readable at the same paths on every worker
(one machine, or shared storage).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from pathlib import Path

from viewer.batch.cluster_spec import ClusterSpec
from viewer.inference.model import LoadedModel
from viewer.io.errors import failure

IN_FLIGHT_PER_WORKER = 2


def fingerprint(manifest_path: str | Path) -> str:
    """SHA-256 of the manifest and its weights files (every checkpoint it lists: ``evaluate
    --stability checkpoints`` loads them all on the workers): the model a result came from."""
    from viewer.inference.manifest import load_manifest

    manifest = load_manifest(manifest_path)
    digest = hashlib.sha256(Path(manifest_path).read_bytes())
    for weights in manifest.checkpoints or (manifest.weights,):
        with open(weights, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


_models: dict[tuple[str, str | None], LoadedModel] = {}


_verified: set[tuple[str, str]] = set()


def _check_fingerprint(manifest_path: str, expected: str) -> None:
    """Refuse a manifest whose files on this worker differ from the client's (once per pair)."""
    if (manifest_path, expected) not in _verified:
        found = fingerprint(manifest_path)
        if found != expected:
            raise RuntimeError(
                f"{manifest_path} on this worker is another model (weights hash {found[:12]}, the "
                f"client's {expected[:12]}); refusing to mix models"
            )
        _verified.add((manifest_path, expected))


def _worker_model(manifest_path: str, expected: str, device: str | None) -> LoadedModel:
    if (manifest_path, device) not in _models:
        _check_fingerprint(manifest_path, expected)
        # No device given: the worker's own default (its GPU, one per worker under dask-cuda).
        _models[manifest_path, device] = LoadedModel.from_manifest(manifest_path, device)
    return _models[manifest_path, device]


_checkpoints: dict[tuple[str, str, str | None], LoadedModel] = {}


def worker_checkpoint(manifest_path: str, weights: str, expected: str, device: str | None) -> LoadedModel:
    """On a worker: one checkpoint of a manifest (``stability`` compares several models or the
    checkpoints one manifest lists), loaded once per process after the same fingerprint check as
    the run's model."""
    from viewer.inference.manifest import load_manifest

    key = (manifest_path, weights, device)
    if key not in _checkpoints:
        _check_fingerprint(manifest_path, expected)
        manifest = load_manifest(manifest_path).checkpoint(Path(weights))
        _checkpoints[key] = LoadedModel(manifest, device)
    return _checkpoints[key]


_annotations: dict[tuple[str, ...], list] = {}


def worker_annotations(paths: tuple[str, ...]) -> list:
    """On a worker: the run's annotation files, read once (a new run's set replaces the last)."""
    from viewer.io.annotations import load_annotation

    if paths not in _annotations:
        _annotations.clear()
        _annotations[paths] = [load_annotation(p) for p in paths]
    return _annotations[paths]


def _attempt(task: Callable, manifest_path: str, expected: str, device, common: tuple, args: tuple):
    """On a worker: ``(True, task(model, *common, *args))``, or ``(False, (reason, worker))`` so
    that the client can try the study again elsewhere."""
    try:
        return True, task(_worker_model(manifest_path, expected, device), *common, *args)
    except Exception as exc:
        from distributed import get_worker

        return False, (failure(exc), get_worker().address)


def connect(spec: ClusterSpec):
    """A ``distributed.Client``: of the running scheduler, or of a local cluster started for the
    run; raises ``OSError`` naming a scheduler it cannot reach."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise RuntimeError(
            "running on a cluster needs Dask: pip install 'saliency-viewer[distributed]'"
        ) from None
    if spec.scheduler:
        try:
            return Client(spec.scheduler, timeout="10s")  # a refused connection is retried until then
        except OSError as exc:
            raise OSError(f"cannot reach the Dask scheduler {spec.scheduler}: {exc}") from None
    workers = max(1, spec.workers or 1)
    # One thread per worker, and torch's threads split between the workers: no oversubscription.
    threads = max(1, (os.cpu_count() or 1) // workers)
    # Dask's sampling profiler walks the worker thread's stack every 10 ms, holding the GIL: off
    # on the workers started here (measured: 107 -> 62 ms of overhead per 128-px study).
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
            env={"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)},
        )
    return Client(cluster)


def run_on_cluster(
    spec: ClusterSpec,
    manifest_path: str,
    task: Callable,
    common: tuple,
    pending: Sequence[tuple[str, tuple]],
    on_started: Callable[[str, int], None] | None = None,
) -> Iterator[tuple[str, object, str | None]]:
    """Run ``task(model, *common, *args)`` on the cluster for each ``(name, args)`` of
    ``pending``. Connects first (raising ``OSError`` before anything is written), calls
    ``on_started(dashboard_link, workers)``, then returns the results as they finish:
    ``(name, result, None)``, or ``(name, None, reason)`` for a study that failed twice."""
    expected = fingerprint(manifest_path)
    client = connect(spec)
    if on_started is not None:  # workers may still be joining: the window grows as they come
        on_started(client.dashboard_link, len(client.scheduler_info()["workers"]))
    return _stream(client, (task, manifest_path, expected, spec.device, common), pending)


def _stream(client, head: tuple, pending) -> Iterator:
    from distributed import as_completed

    tried: dict[str, tuple[str, tuple, int]] = {}  # task key -> study name, its args, attempt
    # Keys of this run only: a killed client's tasks may still be on the scheduler when it resumes.
    run = secrets.token_hex(4)

    def submit(name: str, args: tuple, attempt: int = 0, avoid: str | None = None):
        others = [w for w in client.scheduler_info()["workers"] if w != avoid] if avoid else []
        key = f"{getattr(head[0], '__name__', 'study')}-{name}-{run}-{attempt}"
        placement = {"workers": others, "allow_other_workers": False} if others else {}
        future = client.submit(_attempt, *head, args, key=key, pure=False, **placement)
        tried[future.key] = (name, args, attempt)
        return future

    queue = iter(pending)
    running = as_completed()

    def fill() -> None:
        """Up to two studies in flight per worker, counting workers that joined since (adaptive
        clusters, jobs still queued on Slurm when the run started)."""
        window = IN_FLIGHT_PER_WORKER * max(1, len(client.scheduler_info()["workers"]))
        for name, args in islice(queue, max(0, window - len(tried))):
            running.add(submit(name, args))

    try:
        fill()
        for future in running:
            name, args, attempt = tried.pop(future.key)
            try:
                ok, value = future.result()
            except (Exception, asyncio.CancelledError) as exc:  # the scheduler gave up (KilledWorker)
                ok, value, attempt = False, (failure(exc), None), 1
            future.release()
            if not ok and attempt == 0:  # once more, on another worker when there is one
                running.add(submit(name, args, 1, avoid=value[1]))
                continue
            yield (name, value, None) if ok else (name, None, value[0])
            fill()
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None:
            cluster.close()
