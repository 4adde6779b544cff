"""What is open: ``session.opening``, a part of :class:`~viewer.state.session.ViewerSession`. It
finds the series under the opened paths, loads the one chosen, makes the browser's thumbnails, adds
series found later (a PACS retrieval), and says why a study cannot be loaded. No Qt.

A new image is the moment the other parts change together: the running explanation of the old one
ends, the model made for its modality is chosen, its annotation is shown, its caution said and
its prediction asked for; :meth:`Opening._got_loaded` is that sequence, in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from psygnal import Signal

from viewer.io.discovery import Discovery
from viewer.io.errors import Problem
from viewer.io.image import Image
from viewer.state import tasks
from viewer.state.annotating import Annotating
from viewer.state.explanation_runs import ExplanationRuns
from viewer.state.model_in_use import ModelInUse
from viewer.state.reports import Reports
from viewer.state.runner import Job, Runner, route
from viewer.state.viewer_state import ViewerState


class Opening:
    """The series found (``discovery``) and the index of the one on screen (``series_index``).
    ``opens`` counts the openings: what arrives late is added only to its own."""

    discovered = Signal(object)  # Discovery: the series found under the opened paths
    thumbnails = Signal(list)  # [(series index, uint8 picture)], a batch at a time
    opened = Signal(int, object)  # series index, Image: now on screen

    def __init__(
        self,
        state: ViewerState,
        runner: Runner,
        reports: Reports,
        model: ModelInUse,
        explanation: ExplanationRuns,
        annotation: Annotating,
    ) -> None:
        self.state, self.runner, self.reports = state, runner, reports
        self.model, self.explanation, self.annotation = model, explanation, annotation
        self.discovery: Discovery | None = None
        self.series_index = -1
        self.opens = 0  # how often something was opened: what arrives later is added only to its own
        self.make_thumbnails = True  # pictures of every series found, for the browser (off in a batch run)
        self._discovered_for = -1  # ... and the opening whose discovery is here
        self._early: list[Discovery] = []  # additions that came before their opening's discovery
        self._on_event = route(
            "opening",
            {
                "discovered": self._got_discovered,
                "thumbnails": self.thumbnails.emit,
                "loaded": self._got_loaded,
                "failed": self._got_failed,
            },
        )

    def open_paths(self, paths: Sequence[str | Path]) -> Job:
        """Find the series under ``paths`` and open the first; the rest get thumbnails."""
        paths = [str(p) for p in paths]
        self.opens += 1
        self._early = []
        self.reports.problems_cleared.emit()
        self.reports.message.emit(f"Opening {', '.join(Path(p).name for p in paths)}...", 0)
        for lane in ("explain", "load", "thumbnails"):
            self.runner.cancel(lane)
        return self.runner.submit(
            Job(
                "open",
                lambda job: tasks.open_paths(job, paths),
                "Opening",
                on_event=self._on_event,
                on_progress=lambda step, f: self.reports.progress.emit("open", step, f),
                on_done=lambda status: self._on_opened(status),
            )
        )

    def extend(self, found: Discovery, *, opens: int | None = None) -> None:
        """Add series found later (a PACS series after the first) to those of opening ``opens``
        (default: the current), the image on screen unchanged; dropped once another is opened."""
        opens = self.opens if opens is None else opens
        if opens != self.opens:
            return
        if self._discovered_for != opens:  # that opening is still looking: added to what it finds
            self._early.append(found)
            return
        first = len(self.discovery.series)
        self.discovery = self.discovery + found
        self.discovered.emit(self.discovery)
        if found.problems:
            self.reports.problems_found.emit(list(found.problems))
        if found.series and self.make_thumbnails:
            series = list(found.series)
            self.runner.submit(
                Job(
                    f"thumbnails-{first}",  # a lane each: a later addition never cancels an earlier one
                    lambda job: tasks.thumbnails(job, series, {}, first=first),
                    "Thumbnails",
                    on_event=lambda kind, batch: opens == self.opens and self._on_event(kind, batch),
                )
            )

    def open_found(self, found: Discovery, index: int = 0) -> Job | None:
        """Take series found elsewhere (a batch run's discovery, one study on a cluster worker)
        and open the ``index``-th, as if ``open_paths`` had found them."""
        self._got_discovered(found)
        return self.open_series(index)

    def open_series(self, index: int) -> Job | None:
        found = self.discovery
        if found is None or not 0 <= index < len(found.series) or index == self.series_index:
            return None
        series = found.series[index]
        self.runner.cancel("explain")
        # Its own lane: choosing a series must not cancel the thumbnails still being made.
        return self.runner.submit(
            Job(
                "load",
                lambda job: tasks.load(job, series, index),
                "Loading",
                on_event=self._on_event,
                on_progress=lambda step, f: self.reports.progress.emit("load", step, f),
                on_done=lambda status: self.reports.report_failure("Loading", status),
            )
        )

    def _on_opened(self, status: str) -> None:
        self.reports.report_failure("Opening", status)
        found = self.discovery
        if status != "done" or found is None or not found.series or not self.make_thumbnails:
            return
        image = self.state.image
        opened = {self.series_index: image} if image is not None and self.series_index >= 0 else {}
        series = list(found.series)
        # Queued after the first image's prediction, which "loaded" has already asked for.
        self.runner.submit(
            Job(
                "thumbnails",
                lambda job: tasks.thumbnails(job, series, opened),
                "Thumbnails",
                on_event=self._on_event,
                on_done=lambda s: (
                    s == "done" and self.reports.message.emit(f"Opened {len(series)} series", 5000)
                ),
            )
        )

    def _got_discovered(self, found: Discovery) -> None:
        found, self._early, self._discovered_for = sum(self._early, found), [], self.opens
        self.discovery = found
        self.series_index = -1
        self.discovered.emit(found)
        if found.problems:
            self.reports.problems_found.emit(list(found.problems))
        opens = self.opens  # annotation files beside the images: loaded, kept (for this opening only)
        self.annotation.offer(found, lambda: opens == self.opens)
        if not found.series:
            skipped = f"; {len(found.problems)} file(s) skipped" if found.problems else ""
            self.reports.report_error(f"No images found{skipped}")

    def _got_loaded(self, payload: tuple[int, Image]) -> None:
        index, image = payload
        # A new image cancels stale work: a map of the old one must never land on it.
        self.explanation.drop()  # ... nor what was said about it
        self.runner.cancel("scores")
        self.runner.cancel("predict")
        self.series_index = index
        self.model.set_prediction(None)
        self.model.choose_for(image, self.discovery, index)  # no prediction yet: the image is not open
        self.state.open(image)
        self.annotation.show_on(image)  # the loaded annotation files' regions on it, and those drawn
        self.model.update_caution()
        if image.left_out:
            self.reports.problems_found.emit(list(image.left_out))
        frames = f", {image.n_frames} images" if image.n_frames > 1 else ""
        kind = image.identity.modality or image.kind
        self.reports.message.emit(f"Opened {kind} {image.rows} x {image.columns}{frames}", 5000)
        self.opened.emit(index, image)
        if self.model.predict_on_open:
            self.model.predict()
        self.model.ask_if_unsure()

    def _got_failed(self, payload: tuple[int, str]) -> None:
        """The study ``index`` could not be loaded: nothing of the previous study stays on screen
        (image, layers, annotation, prediction), and the failure is listed in Problems with its
        reason. Choosing the study again tries again."""
        index, message = payload
        self.explanation.drop()  # the running explanation was of the study before: it ends
        for lane in ("scores", "predict"):
            self.runner.cancel(lane)
        self.series_index = -1
        self.model.forget_image()
        self.state.close()
        self.model.update_caution()
        problem = self._failure_problem(index, message)
        self.reports.problems_found.emit([problem])
        self.reports.report_error(f"Cannot open {Path(problem.path).name}: {problem.reason}")

    def _failure_problem(self, index: int, message: str) -> Problem:
        """The failure as a Problem: the file the loader names (a ``LoadError`` says ``"<file>:
        <reason>"``), else the study's first file."""
        found = self.discovery
        paths = found.series[index].paths if found is not None and 0 <= index < len(found.series) else []
        for path in paths:
            if message.startswith(f"{path}: "):
                return Problem(path, message.removeprefix(f"{path}: "))
        return Problem(paths[0] if paths else "", message)
