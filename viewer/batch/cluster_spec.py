"""Where a batch run's studies run, as a value the CLI, the GUI and the runs share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterSpec:
    """A running Dask scheduler's address (``tcp://host:8786``), or a local cluster of
    ``workers`` processes started for the run; ``device`` is the torch device the workers load
    the model on (None: each worker's default, its GPU if it has one)."""

    scheduler: str | None = None
    workers: int | None = None
    device: str | None = None
