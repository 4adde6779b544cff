"""Connections by protocol, and retrieval of a study into the cache, series by series, resumable.

What a retrieval keeps is bounded by the node's budgets: an instance larger than
``nodes.instance_budget``, or a study past ``max_study_mb`` (counted over its series as they arrive),
stops the retrieval with the reason. DICOMweb also counts the bytes as they are read
(``http_guard``), so an endless answer stops before it is held in memory; over DIMSE an instance
is measured once it has arrived, and the node's ``deadline`` bounds the association."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydicom import Dataset

from viewer.io.pacs.cache import StudyCache, check_uid
from viewer.io.pacs.nodes import (
    DicomWebNode,
    DimseNode,
    PacsConfig,
    PacsError,
    PacsNode,
    default_cache_folder,
    instance_budget,
    study_budget,
)
from viewer.io.pacs.query import InstanceMatch, SeriesMatch, StudyMatch, StudyQuery

_MB = 1024 * 1024


class Connection(Protocol):
    """What every protocol offers (``DicomWebConnection``, ``DimseConnection``)."""

    node: PacsNode

    def echo(self) -> None: ...
    def find_studies(self, query: StudyQuery) -> list[StudyMatch]: ...
    def find_series(self, study_uid: str) -> list[SeriesMatch]: ...
    def find_instances(self, study_uid: str, series_uid: str) -> list[InstanceMatch]: ...
    def fetch(
        self,
        study_uid: str,
        series_uid: str,
        instances: list[InstanceMatch],
        sink: Callable[[bytes], None],
        *,
        whole_series: bool,
    ) -> None: ...
    def store(self, datasets: list[Dataset]) -> None: ...
    def close(self) -> None: ...


def _dicomweb(node: DicomWebNode) -> Connection:
    from viewer.io.pacs.dicomweb import DicomWebConnection

    return DicomWebConnection(node)


def _dimse(node: DimseNode) -> Connection:
    from viewer.io.pacs.dimse import DimseConnection

    return DimseConnection(node)


# node class -> how to connect to it
CONNECTIONS: dict[type, Callable[[PacsNode], Connection]] = {DicomWebNode: _dicomweb, DimseNode: _dimse}


def connect(node: PacsNode) -> Connection:
    return CONNECTIONS[type(node)](node)


def open_cache(config: PacsConfig) -> StudyCache:
    return StudyCache(config.cache_folder or default_cache_folder(), int(config.cache_max_gb * 1024**3))


@dataclass(frozen=True)
class RetrievedSeries:
    series: SeriesMatch
    folder: Path
    instances: int
    received: int  # this time; 0 when it was complete in the cache already
    complete: bool


@dataclass(frozen=True)
class RetrieveProgress:
    series_index: int
    series_count: int
    instances: int  # of this series, arrived so far (with those cached before)
    expected: int


def retrieve_study(
    connection: Connection,
    cache: StudyCache,
    study_uid: str,
    series_uids: Sequence[str] | None = None,
    *,
    on_series: Callable[[RetrievedSeries], None] | None = None,
    on_progress: Callable[[RetrieveProgress], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> list[RetrievedSeries]:
    """Every series of the study (or just ``series_uids``) into ``cache``; ``on_series`` hears of
    each as it completes, so the first can be opened while the rest arrive. A series the cache has
    whole is not asked for again; one cut short before is completed with only what it lacks."""
    node = connection.node
    check_uid(study_uid, "Study Instance UID")
    series = connection.find_series(study_uid)
    if series_uids is not None:
        wanted = set(series_uids)
        missing = wanted - {s.series_uid for s in series}
        if missing:
            raise PacsError(node.name, "retrieve", f"study {study_uid} has no series {sorted(missing)[0]}")
        series = [s for s in series if s.series_uid in wanted]
    if not series:
        raise PacsError(node.name, "retrieve", f"no study {study_uid} on the server")
    series.sort(key=lambda s: (s.number is None, s.number or 0, s.series_uid))
    spent = _Spent(node, study_uid)
    done: list[RetrievedSeries] = []
    for index, match in enumerate(series):
        if cancelled():
            break
        folder = cache.series_folder(node, study_uid, match.series_uid)
        state = cache.state(folder)
        if state is not None and state.complete and len(cache.instances(folder)) >= state.expected:
            cache.touch(folder)
            result = RetrievedSeries(match, folder, state.expected, 0, True)
        else:
            result = _retrieve_series(
                connection, cache, match, folder, index, len(series), on_progress, cancelled, spent
            )
        done.append(result)
        if on_series is not None:
            on_series(result)
    cache.evict(keep=[r.folder for r in done])
    return done


class _Spent:
    """The bytes a study's retrieval received, against the node's budgets."""

    def __init__(self, node: PacsNode, study_uid: str):
        self.node, self.study_uid = node, study_uid
        self.instance_limit, self.instance_note = instance_budget(node)
        self.study_limit, self.study_note = study_budget(node)
        self.total = 0

    def add(self, size: int) -> None:
        node = self.node
        if size > self.instance_limit:
            raise PacsError(
                node.name,
                "retrieve",
                f"an instance of study {self.study_uid} holds {size / _MB:.0f} MB, over "
                f"{self.instance_limit / _MB:g} MB, {self.instance_note}",
            )
        self.total += size
        if self.total > self.study_limit:
            raise PacsError(
                node.name,
                "retrieve",
                f"study {self.study_uid} passed {self.study_limit / _MB:g} MB, {self.study_note}",
            )


def _retrieve_series(
    connection: Connection,
    cache: StudyCache,
    match: SeriesMatch,
    folder: Path,
    index: int,
    count: int,
    on_progress: Callable[[RetrieveProgress], None] | None,
    cancelled: Callable[[], bool],
    spent: _Spent,
) -> RetrievedSeries:
    node = connection.node
    listed = connection.find_instances(match.study_uid, match.series_uid)  # their UIDs checked
    have = cache.instances(folder)
    missing = [i for i in listed if i.sop_uid not in have]
    folder.mkdir(parents=True, exist_ok=True)
    cache.mark(folder, node, len(listed), complete=False)  # stays so if this is cut short
    arrived = [len(listed) - len(missing)]

    class Cancelled(Exception):
        pass

    def sink(data: bytes) -> None:
        if cancelled():
            raise Cancelled
        spent.add(len(data))
        cache.put(folder, data)
        arrived[0] += 1
        if on_progress is not None:
            on_progress(RetrieveProgress(index, count, arrived[0], len(listed)))

    if missing:
        # Nothing cached: the whole series in one request; else only what is missing.
        with contextlib.suppress(Cancelled):
            connection.fetch(
                match.study_uid, match.series_uid, missing, sink, whole_series=len(missing) == len(listed)
            )
    now = cache.instances(folder)
    complete = all(i.sop_uid in now for i in listed)
    if complete:
        cache.mark(folder, node, len(listed), complete=True)
    elif not cancelled():
        lacking = len([i for i in listed if i.sop_uid not in now])
        # A multipart answer cut short ends like a whole one: only the count tells.
        raise PacsError(
            node.name,
            "retrieve",
            f"series {match.series_uid}: {lacking} of {len(listed)} instances did not arrive "
            "(the answer was cut short; retrieving again fetches only those)",
            transient=True,
        )
    return RetrievedSeries(match, folder, len(listed), len(now) - (len(listed) - len(missing)), complete)
