"""``saliency-viewer stability`` on a Dask cluster (``--workers N`` or ``--scheduler ADDRESS``, as
for ``explain`` and ``evaluate``; ``viewer.batch.cluster`` does the scheduling).

The unit of work is one film. A stability run compares several models (manifests, or the
checkpoints one manifest lists), so a task carries each model as its manifest path and weights
file with the manifest's fingerprint, never a pickled network: a worker loads every checkpoint
once and refuses files that differ from the client's. The worker sends back the film's rows and
maps (``ImageResult``); the client writes both, film by film, so a killed worker or client loses
at most the films in flight and ``--resume`` skips the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from viewer.batch.cluster import fingerprint, run_on_cluster, worker_checkpoint
from viewer.inference.model import LoadedModel

# A film's comparisons: ``viewer.batch.stability_run.image_result(request, models, series, name)``,
# handed in by that module (which imports this one) so that the two do not import each other.
Compare = Callable[..., object]


@dataclass(frozen=True)
class ModelSource:
    """Where a worker finds one compared model: its name in the CSV, manifest and weights file."""

    name: str
    manifest: str
    weights: str
    fingerprint: str


def model_sources(models: dict[str, LoadedModel]) -> tuple[ModelSource, ...]:
    """The client's models as sources, fingerprinting each manifest once."""
    prints: dict[str, str] = {}
    sources = []
    for name, model in models.items():
        path = str(model.manifest.path)
        if path not in prints:
            prints[path] = fingerprint(path)
        sources.append(ModelSource(name, path, str(model.manifest.weights), prints[path]))
    return tuple(sources)


def stability_task(
    model: LoadedModel, compare: Compare, request, sources: Sequence[ModelSource], series, name: str
):
    """On a worker: one film's comparisons. ``model`` (the first manifest's default checkpoint,
    loaded by ``run_on_cluster``) stands for its own source; the others are loaded here."""
    device = request.cluster.device if request.cluster else None
    models = {}
    for source in sources:
        same = source.manifest == str(model.manifest.path) and source.weights == str(model.manifest.weights)
        models[source.name] = (
            model if same else worker_checkpoint(source.manifest, source.weights, source.fingerprint, device)
        )
    return compare(request, models, series, name)


def films_on_cluster(
    compare: Compare,
    request,
    pending: Sequence[tuple[object, str]],
    on_cluster: Callable[[str, int], None] | None = None,
) -> Iterator[tuple[str, object, str | None]]:
    """``(name, compare(...), None)`` or ``(name, None, reason)`` per film of ``pending``
    (``(series, name)`` pairs of a ``StabilityRequest``) as the workers finish them; connects
    first (``OSError`` for a scheduler that cannot be reached)."""
    sources = model_sources(request.models)
    light = replace(request, models={})  # what travels: settings, no networks
    return run_on_cluster(
        request.cluster, sources[0].manifest, stability_task, (compare, light, sources),
        [(name, (series, name)) for series, name in pending], on_started=on_cluster,
    )  # fmt: skip
