"""Studies on a PACS, for the viewer: query a node, list a study's series, retrieve into the local
cache and open what arrives, and send results back. No Qt.

The work runs through a runner of its own (the GUI gives it a second worker thread), so a long
retrieval never holds up loading or explaining what is already on screen. What arrives opens as if
it had been dropped on the window, progressively: the first series as soon as it is whole, each
later one added to the study browser as it completes, unless the user has opened something else
meanwhile. Every failure is said in one line naming the node and the operation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from psygnal import Signal

from viewer.io.discovery import discover
from viewer.io.pacs import (
    ConfigError,
    PacsConfig,
    PacsError,
    PacsNode,
    RetrievedSeries,
    RetrieveProgress,
    StudyLocation,
    StudyQuery,
    connect,
    load_config,
    open_cache,
    parse_study_url,
    retrieve_study,
)
from viewer.io.series import Discovery
from viewer.state.runner import Job, Runner
from viewer.state.session import ViewerSession


@dataclass(frozen=True)
class RetrieveRequest:
    """One study to retrieve, or only some of its series (``series_uids``)."""

    study_uid: str
    series_uids: tuple[str, ...] | None = None


class PacsSession:
    """The PACS side of one viewer session; signals are emitted on the session's thread."""

    studies_found = Signal(str, list)  # node name, [StudyMatch]
    series_found = Signal(str, list)  # Study Instance UID, [SeriesMatch]
    echoed = Signal(str)  # node name: it answered
    progress = Signal(str, float)  # a line about the retrieval, its overall fraction
    retrieved = Signal(object)  # RetrievedSeries, as each series is whole in the cache
    retrieve_done = Signal(str)  # "done", "cancelled" or "failed: <reason>"
    sent = Signal(str)  # node name, once everything asked was stored there
    error = Signal(str)  # a failure, said so the user can act on it

    def __init__(
        self,
        runner: Runner,
        viewer: ViewerSession,
        config: Callable[[], PacsConfig] = load_config,
    ) -> None:
        self.runner = runner
        self.viewer = viewer
        self._read_config = config
        self.errors: list[str] = []  # for headless runs and tests
        self._opened: int | None = None  # the viewer's open count the retrieval's first series made
        self._sends = 0

    # --- configuration ------------------------------------------------------------------------
    def config(self) -> PacsConfig | None:
        """The configured nodes, read afresh (the node editor may have changed them); None, and
        the reason said, when the file cannot be read."""
        try:
            return self._read_config()
        except ConfigError as exc:
            self._fail(str(exc))
            return None

    def node(self, name: str) -> PacsNode | None:
        config = self.config()
        if config is None:
            return None
        try:
            return config.node(name)
        except ConfigError as exc:
            self._fail(str(exc))
            return None

    # --- asking the node ----------------------------------------------------------------------
    def echo(self, name: str) -> Job | None:
        return self._ask(name, "pacs-echo", "Echo", lambda c: (c.echo(), name)[1], self.echoed.emit)

    def query(self, name: str, query: StudyQuery) -> Job | None:
        """Studies matching ``query`` on node ``name`` (``studies_found``); a new query replaces
        one still running."""
        deliver = lambda matches: self.studies_found.emit(name, matches)  # noqa: E731
        return self._ask(name, "pacs-query", "Query", lambda c: c.find_studies(query), deliver)

    def list_series(self, name: str, study_uid: str) -> Job | None:
        """The series of one study (``series_found``); each study is asked in a lane of its own,
        so expanding a second study does not cancel the first."""
        return self._ask(
            name,
            f"pacs-series-{study_uid}",
            "Series query",
            lambda c: c.find_series(study_uid),
            lambda matches: self.series_found.emit(study_uid, matches),
        )

    def _ask(self, name: str, lane: str, what: str, ask: Callable, deliver: Callable) -> Job | None:
        node = self.node(name)
        if node is None:
            return None

        def run(job: Job) -> None:
            connection = connect(node)
            try:
                answer = ask(connection)
            finally:
                connection.close()
            job.check()
            job.emit("answer", answer)

        return self.runner.submit(
            Job(
                lane,
                run,
                f"{what} of {name}",
                on_event=lambda _kind, answer: deliver(answer),
                on_done=lambda status: self._report(status),
            )
        )

    # --- retrieving ---------------------------------------------------------------------------
    def retrieve(self, name_or_node: str | PacsNode, requests: Sequence[RetrieveRequest]) -> Job | None:
        """Retrieve ``requests`` from the node into the cache, opening the first series as it is
        whole and adding the others as they arrive. Replaces a retrieval still running (what it
        had received stays in the cache and is not asked for again)."""
        node = self.node(name_or_node) if isinstance(name_or_node, str) else name_or_node
        config = self.config()
        if node is None or config is None or not requests:
            return None
        cache = open_cache(config)
        requests = list(requests)
        self._opened = None

        arrived: list[RetrievedSeries] = []

        def found(series: RetrievedSeries) -> tuple[RetrievedSeries, Discovery | None]:
            # The first opens as if dropped; the later ones are looked at here, off the GUI thread.
            arrived.append(series)
            return series, (discover([series.folder]) if len(arrived) > 1 else None)

        def run(job: Job) -> None:
            connection = connect(node)
            failures: list[str] = []
            try:
                for number, request in enumerate(requests):
                    job.check()

                    def progress(p: RetrieveProgress, number=number) -> None:
                        within = (p.series_index + p.instances / max(p.expected, 1)) / max(p.series_count, 1)
                        job.progress(
                            f"Retrieving study {number + 1} of {len(requests)}, series {p.series_index + 1} "
                            f"of {p.series_count}: {p.instances} of {p.expected} images",
                            (number + within) / len(requests),
                        )

                    try:
                        retrieve_study(
                            connection,
                            cache,
                            request.study_uid,
                            request.series_uids,
                            on_series=lambda series: job.emit("series", found(series)),
                            on_progress=progress,
                            cancelled=job.cancel.is_set,
                        )
                    except PacsError as exc:  # said, and the next study still comes
                        failures.append(str(exc))
                        job.emit("failed", str(exc))
            finally:
                connection.close()
            if failures and len(failures) == len(requests):
                raise PacsError(node.name, "retrieve", "nothing could be retrieved")

        return self.runner.submit(
            Job(
                "pacs-retrieve",
                run,
                f"Retrieval from {node.name}",
                on_event=self._on_retrieve_event,
                on_progress=lambda step, fraction: self.progress.emit(step, fraction),
                on_done=self._on_retrieved,
            )
        )

    def open_location(self, location: StudyLocation) -> Job | None:
        """Retrieve and open the study (or series) a study URL names."""
        series = (location.series_uid,) if location.series_uid else None
        return self.retrieve(location.node, [RetrieveRequest(location.study_uid, series)])

    def open_urls(self, urls: Sequence[str]) -> Job | None:
        """Retrieve and open the studies ``urls`` name (DICOMweb, ``dimse://`` or ``pacs://``),
        one retrieval per node, the first node's in the foreground."""
        config = self.config()
        if config is None:
            return None
        by_node: dict[PacsNode, list[RetrieveRequest]] = {}
        for url in urls:
            try:
                location = parse_study_url(url, config)
            except ConfigError as exc:
                self._fail(str(exc))
                continue
            series = (location.series_uid,) if location.series_uid else None
            by_node.setdefault(location.node, []).append(RetrieveRequest(location.study_uid, series))
        if not by_node:
            return None
        if len(by_node) > 1:
            self._fail("study URLs of more than one server: retrieving those of the first only")
        node, requests = next(iter(by_node.items()))
        return self.retrieve(node, requests)

    def cancel(self) -> None:
        self.runner.cancel("pacs-retrieve")

    def _on_retrieve_event(self, kind: str, payload) -> None:
        if kind == "failed":
            self._fail(payload)
            return
        series, found = payload
        if found is None:
            self.viewer.open_paths([series.folder])
            self._opened = self.viewer.opening.opens
        else:
            self.viewer.opening.extend(found, opens=self._opened)
        self.retrieved.emit(series)

    def _on_retrieved(self, status: str) -> None:
        self._report(status)
        self.retrieve_done.emit(status)

    # --- sending ------------------------------------------------------------------------------
    def send_files(
        self,
        name: str,
        paths: Sequence[Path],
        *,
        model: tuple[str, Path] | None = None,
        then: Callable[[str], None] | None = None,
    ) -> Job | None:
        """Store the DICOM files ``paths`` on node ``name`` (``sent`` once all are stored), each
        naming the algorithm when ``model`` (its name and weights file) is given; a transient
        failure is retried with the same SOP Instance UIDs. ``then(status)`` comes at the end,
        however it ended."""
        node = self.node(name)
        if node is None:
            return None
        paths = [Path(p) for p in paths]

        def run(job: Job) -> None:
            from viewer.io.pacs.send import Algorithm, read_results, send

            # Hashing the weights is the job's: a large file must not stall the GUI.
            algorithm = Algorithm.of_weights(*model) if model is not None else None
            try:
                datasets = read_results(paths, algorithm)
            except ValueError as exc:  # a file that is not DICOM: named
                raise PacsError(name, "send", str(exc)) from None
            connection = connect(node)
            try:
                send(connection, datasets)
            finally:
                connection.close()
            job.emit("sent", name)

        def done(status: str) -> None:
            self._report(status)
            if then is not None:
                then(status)

        self._sends += 1
        return self.runner.submit(
            Job(
                f"pacs-send-{self._sends}",  # one lane each: a second send never cancels the first
                run,
                f"Sending to {name}",
                on_event=lambda _kind, node_name: self.sent.emit(node_name),
                on_done=done,
            )
        )

    # --- failures -----------------------------------------------------------------------------
    def _report(self, status: str) -> None:
        if status.startswith("failed: "):
            self._fail(status.removeprefix("failed: "))

    def _fail(self, message: str) -> None:
        self.errors.append(message)
        self.error.emit(message)
