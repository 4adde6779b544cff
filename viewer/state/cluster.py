"""Evaluation studies run on a Dask cluster (``evaluate --workers N`` or ``--scheduler ADDRESS``).

The unit of work is one study. A task carries the study's ``SeriesInfo`` (paths, never pixels),
the model's manifest path and its fingerprint, never a pickled model: each worker process loads
the model once from the manifest, checks that its fingerprint equals the client's (a worker that
sees other weights under the same path refuses rather than mixing models), and keeps it.
Results stream back as they finish; only the client writes the output files, image by image, so
a killed client or worker loses at most the studies in flight, and ``--resume`` skips the rest.

At most ``2 x workers`` studies are in flight, so memory stays flat over 10^5 studies. A task
whose worker dies is given to another worker by the scheduler; a study that fails on its own (a
bad file) is retried once, then reported with its reason, and the run goes on. Inputs, the
manifest and annotation files must be readable at the same paths on every worker (one machine,
or shared storage); pictures for the report come back as PNG bytes and are written by the client.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from functools import partial
from itertools import islice
from pathlib import Path

from viewer.inference.model import LoadedModel
from viewer.io.annotations import load_annotation
from viewer.io.series import SeriesInfo
from viewer.state.cluster_spec import ClusterSpec
from viewer.state.evaluation_study import evaluate_one, failure

_IN_FLIGHT_PER_WORKER = 2


def fingerprint(manifest_path: str | Path) -> str:
    """SHA-256 of the manifest and its weights file: the model a result came from."""
    from viewer.inference.manifest import load_manifest

    manifest = load_manifest(manifest_path)
    digest = hashlib.sha256(Path(manifest_path).read_bytes())
    with open(manifest.weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_models: dict[str, LoadedModel] = {}
_annotations: dict[tuple[str, ...], list] = {}


def _worker_model(manifest_path: str, expected: str) -> LoadedModel:
    if manifest_path not in _models:
        found = fingerprint(manifest_path)
        if found != expected:
            raise RuntimeError(
                f"{manifest_path} on this worker is another model (weights hash {found[:12]}, the "
                f"client's {expected[:12]}); refusing to mix models"
            )
        _models[manifest_path] = LoadedModel.from_manifest(manifest_path)  # its GPU, if it has one
    return _models[manifest_path]


def evaluate_study(
    manifest_path: str,
    expected: str,
    annotation_paths: tuple[str, ...],
    methods: Sequence[str],
    seed: int,
    series: SeriesInfo,
    name: str,
) -> tuple[list[dict], list[tuple[str, str, float, bytes]]]:
    """On a worker: one study's rows, and the pictures of its scored maps as PNG bytes."""
    model = _worker_model(manifest_path, expected)
    if annotation_paths not in _annotations:
        _annotations[annotation_paths] = [load_annotation(p) for p in annotation_paths]
    rows, pictures = evaluate_one(model, series, name, _annotations[annotation_paths], methods, seed)
    return rows, [(label, method, iou, draw()) for label, method, iou, draw in pictures]


def _client(spec: ClusterSpec):
    try:
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
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        env={"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)},
    )
    return Client(cluster)


def evaluate_on_cluster(
    spec: ClusterSpec,
    manifest_path: str,
    pending: Sequence[tuple[SeriesInfo, str]],
    annotation_paths: Sequence[str],
    methods: Sequence[str],
    seed: int,
    on_started=None,
) -> Iterator[tuple[str, list[dict] | None, list | None, str | None]]:
    """Connects (raising ``OSError`` naming a scheduler it cannot reach, before anything is
    written), calls ``on_started(dashboard_link, workers)``, and returns the results as they
    finish: ``(name, rows, pictures, None)`` per study, or ``(name, None, None, reason)`` for one
    that failed twice."""
    expected = fingerprint(manifest_path)
    client = _client(spec)
    workers = max(1, len(client.scheduler_info()["workers"]))
    if on_started is not None:
        on_started(client.dashboard_link, workers)
    common = (manifest_path, expected, tuple(str(p) for p in annotation_paths), list(methods), seed)
    return _stream(client, workers, pending, common)


def _stream(client, workers: int, pending, common: tuple) -> Iterator:
    """``common``: the arguments of ``evaluate_study`` every study shares, before its own."""
    from distributed import as_completed

    try:
        queue = iter(pending)
        names = {}

        def submit(item) -> object:
            series, name = item
            key = f"evaluate-{name}-{common[1][:8]}"
            future = client.submit(evaluate_study, *common, series, name, key=key, retries=1, pure=False)
            names[future.key] = name
            return future

        running = as_completed([submit(item) for item in islice(queue, _IN_FLIGHT_PER_WORKER * workers)])
        for future in running:
            name = names.pop(future.key)
            try:
                rows, pictures = future.result()
            except Exception as exc:  # the study's own failure, after its retry
                yield name, None, None, failure(exc)
            else:  # pictures as the in-process run gives them: drawn when asked for
                yield (
                    name,
                    rows,
                    [(label, method, iou, partial(bytes, png)) for label, method, iou, png in pictures],
                    None,
                )
            future.release()
            for item in queue:  # keep the window full: one new study per finished one
                running.add(submit(item))
                break
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None:
            cluster.close()
