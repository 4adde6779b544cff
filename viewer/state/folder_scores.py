"""Scores of every opened image the loaded annotation names: the Compare tab's "Every annotated
image". No Qt.

The images are scored one by one in the background with the evaluation code of ``saliency-viewer
evaluate`` and **Tools > Evaluate folder...** (``evaluate_one``: every label annotated on an image
x every method, CheXlocalize's protocol; the model's false-positive localizations), then summarised
as they are (``summarise``: per label and method, the means with their bootstrap intervals). Each
image and method is a job of its own in one lane, so an image or a map asked for in the meantime
waits for one method on one image, not for the folder; a new request (or a new opening) supersedes
the run: latest request wins.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from psygnal import Signal

from viewer.explain.context import Cancelled
from viewer.explain.evaluation import BOX_ROWS, RADIOLOGISTS, summarise
from viewer.explain.study_scores import evaluate_one
from viewer.io.errors import failure
from viewer.io.naming import series_name, unique_name
from viewer.io.series import SeriesInfo
from viewer.state.runner import Job

LANE = "folder_scores"
BOOTSTRAP = 1000  # resamples for the summary's intervals, as ``evaluate`` draws by default


class FolderScores:
    """Scores every opened image (the session's ``discovery``) that an annotation names: a loaded
    annotation file, or regions drawn in the viewer."""

    rows_added = Signal(str, list)  # image name, its rows (``PER_IMAGE`` columns)
    summarised = Signal(list)  # the summary rows (``SUMMARY`` columns)
    status_changed = Signal(str)
    running_changed = Signal(bool)

    def __init__(self, session) -> None:
        self.session = session
        self.rows: list[dict] = []
        self.images: list[str] = []  # names of the images scored, in order
        self.problems: list[tuple[str, str]] = []  # (image, why it could not be scored)
        self.summary: list[dict] = []
        self.status = ""
        self.running = False
        self._run = 0  # which request the jobs in flight answer: results of older ones are dropped
        self._todo: deque = deque()
        self._total = 0
        self._methods: list[str] = []
        self._image: _Image | None = None  # the image being scored, and its methods still to run
        self._model = ""
        session.opening.discovered.connect(lambda _found: self.reset())

    # --- what there is to score ------------------------------------------------------------------
    def named(self) -> list[tuple[SeriesInfo, str, bool]]:
        """The opened series an annotation names, each with its name (as ``evaluate`` names it)
        and whether that is certain (False: a region in patient space may lie on it, which only
        its loaded image tells)."""
        found = self.session.opening.discovery
        sources = self.session.annotation.book.sources()
        if found is None or not sources:
            return []
        used: set[str] = set()
        out = []
        for series in found.series:
            name = unique_name(series_name(series), used)  # every series: names as evaluate's
            answers = [source.names(series) for source in sources]
            if True in answers or None in answers:
                out.append((series, name, True in answers))
        return out

    # --- running -----------------------------------------------------------------------------------
    def start(self, methods: list[str] | None = None) -> bool:
        """Score every named image with ``methods`` (default: the ticked ones) and the model in use,
        in the background; supersedes a run in progress. False (and the status says why) when
        there is nothing to score."""
        self.cancel(quiet=True)
        self.rows, self.images, self.problems, self.summary = [], [], [], []
        manifest, named = self.session.model.manifest_path, self.named()
        if manifest is None or not named:
            self._say("Choose a model first" if manifest is None else "No opened image has an annotation")
            return False
        self._todo, self._total = deque(named), len(named)
        self._methods, self._model = (
            list(methods or self.session.explanation.methods),
            self.session.state.model,
        )
        self._set_running(True)
        self._next()
        return True

    def cancel(self, *, quiet: bool = False) -> None:
        """Stop the run; the images scored so far keep their rows."""
        self._run += 1
        self._todo.clear()
        self._image = None
        self.session.runner.cancel(LANE)
        if self.running:
            self._set_running(False)
            if not quiet:
                self._say(f"Stopped after {len(self.images)} of {self._total} images")

    def reset(self) -> None:
        """Forget the scores (another folder was opened)."""
        self.cancel(quiet=True)
        self.rows, self.images, self.problems, self.summary, self._total = [], [], [], [], 0
        self._say("")
        self.summarised.emit([])

    def _next(self) -> None:
        """Submit the next job: the next method on the image being scored, else the next image's
        first, else the summary."""
        run, session, image = self._run, self.session, self._image
        if image is None or not image.methods:
            if not self._todo:
                self._image = None
                self._summarise(run)
                return
            series, name, certain = self._todo.popleft()
            annotations = [source.for_series(series) for source in session.annotation.book.sources()]
            annotations = [a for a in annotations if a.regions]
            image = self._image = _Image(series, name, certain, annotations, deque(self._methods))
            image.number = self._total - len(self._todo)
        method, first = image.methods.popleft(), len(image.methods) == len(self._methods) - 1
        store, manifest, seed = session.model.store, session.model.manifest_path, session.explanation.seed
        where = f"Scoring image {image.number} of {self._total}: {image.name}"
        self._say(where)
        series, name, annotations = image.series, image.name, image.annotations
        job = Job(
            LANE,
            lambda job: _score_one(job, store, manifest, series, name, annotations, [method], seed),
            f"Scoring {name}",
            on_event=lambda kind, payload: run == self._run and self._on_result(kind, payload, first),
            on_progress=lambda step, f: run == self._run and self._say(f"{where} ({step} {f:.0%})"),
            on_done=lambda status: run == self._run and self._after(status, name),
        )
        session.runner.submit(job)

    def _on_result(self, kind: str, payload, first: bool) -> None:
        image = self._image
        if kind == "failed":
            self.problems.append(payload)
            image.methods.clear()  # the image cannot be scored: its other methods are not tried
            return
        name, rows = payload
        rows = [row for row in rows if row["method"] not in BOX_ROWS]  # a detector's boxes: maps only here
        if first and not image.certain and all(row["false_positive"] for row in rows):
            image.methods.clear()  # its patient-space regions lie elsewhere: not an image it names
            return
        if not first:  # the readers' agreement came with the image's first method
            rows = [row for row in rows if row["method"] != RADIOLOGISTS]
        if first:
            self.images.append(name)
        self.rows += rows
        self.rows_added.emit(name, rows)

    def _after(self, status: str, name: str) -> None:
        if status.startswith("failed"):
            self.problems.append((name, status.removeprefix("failed: ")))
            self._image.methods.clear()
        if status == "cancelled":
            return
        self._next()

    def _summarise(self, run: int) -> None:
        rows, seed = list(self.rows), self.session.explanation.seed
        self.session.runner.submit(
            Job(
                LANE,
                lambda job: job.emit("summary", summarise(rows, n=BOOTSTRAP, seed=seed)),
                "Summarising the scores",
                on_event=lambda _kind, summary: run == self._run and self._show_summary(summary),
                on_done=lambda status: run == self._run and self._finished(status),
            )
        )

    def _show_summary(self, summary: list[dict]) -> None:
        self.summary = summary
        self.summarised.emit(summary)

    def _finished(self, status: str) -> None:
        self._set_running(False)
        if status.startswith("failed"):
            self._say(f"Summary failed: {status.removeprefix('failed: ')}")
            return
        text = f"Scored {len(self.images)} images the annotation names with {self._model}"
        if self.problems:
            name, reason = self.problems[0]
            text += f"; {len(self.problems)} could not be scored ({name}: {reason})"
        self._say(text)

    def _set_running(self, running: bool) -> None:
        self.running = running
        self.running_changed.emit(running)

    def _say(self, text: str) -> None:
        self.status = text
        self.status_changed.emit(text)


@dataclass(eq=False)
class _Image:
    series: SeriesInfo
    name: str
    certain: bool  # an annotation names it (False: it may, through regions in patient space)
    annotations: list
    methods: deque = field(default_factory=deque)  # still to run on it
    number: int = 0  # its place in the run, from 1


def _score_one(job, store, manifest, series, name, annotations, methods, seed) -> None:
    """One image's rows for ``methods``, as ``evaluate`` writes them to ``per_image.csv``: emits
    ``rows`` ``(name, rows)``, or ``failed`` ``(name, reason)`` for an image that cannot be scored."""
    model = store.get(manifest)
    try:
        rows, _pictures = evaluate_one(
            model, series, name, annotations, methods, seed, on_progress=job.progress, cancel=job.cancel
        )
    except Cancelled:
        raise
    except Exception as exc:  # one image that cannot be scored never stops the others
        job.emit("failed", (name, failure(exc)))
        return
    job.check()
    job.emit("rows", (name, rows))


__all__ = ["LANE", "FolderScores"]
