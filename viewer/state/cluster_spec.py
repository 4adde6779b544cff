"""Where an evaluation's studies run, as a value the CLI, the GUI and the run share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterSpec:
    """A running Dask scheduler's address (``tcp://host:8786``), or a local cluster of
    ``workers`` processes started for the run."""

    scheduler: str | None = None
    workers: int | None = None
