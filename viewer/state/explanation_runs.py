"""The explanations: ``session.explanation``, a part of :class:`~viewer.state.session.ViewerSession`.
It runs the ticked methods on the slice on screen or over every slice, shows each map as it comes
(an anytime method's estimate as it is refined), cancels, and says what is going on. No Qt.

One explanation runs at a time (the ``explain`` lane: latest request wins). While it runs,
``explaining`` is True (the GUI's Cancel button is live); when it ends, however it ends, or when a
new image opens, the method status is replaced, so no run's text outlives it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from psygnal import Signal

from viewer.explain import DEFAULT_METHODS
from viewer.explain.registry import is_slow, title_of, typical_seconds
from viewer.state import tasks
from viewer.state.layer_book import LayerBook
from viewer.state.map_cache import MapCache
from viewer.state.model_in_use import ModelInUse
from viewer.state.reports import Reports
from viewer.state.runner import Job, Runner, route
from viewer.state.viewer_state import ViewerState


class ExplanationRuns:
    """The user's method preferences (``methods`` ticked, ``run_on_open``, ``seed``) and the
    running explanation. Maps land in the shared ``cache`` and the ``layers``."""

    explain_progress = Signal(int, int, str, float)  # maps done, maps asked, method, its fraction
    explaining = Signal(bool)  # an explanation started (True) or ended
    method_status = Signal(str)  # one line about the last explanation
    maps_shown = Signal()  # an explanation finished and its layers are in the state
    series_explained = Signal(object, object)  # Image, Explanation over all its frames

    def __init__(
        self,
        state: ViewerState,
        runner: Runner,
        reports: Reports,
        model: ModelInUse,
        cache: MapCache,
        layers: LayerBook,
    ) -> None:
        self.state, self.runner, self.reports, self.model = state, runner, reports, model
        self.cache, self.layers = cache, layers
        # Preferences the user sets in the panels (saved by the GUI between runs).
        self.methods: list[str] = list(DEFAULT_METHODS)  # ticked in the method list
        self.run_on_open = False  # compute the ticked methods on each new image, slice or target
        self.seed = 0
        # Show LIME's and RISE's estimate as it is refined (off: one map when each is done, as before).
        self.anytime = True
        self.regions = dict  # () -> a segmenter's chosen regions, label -> mask (session.outputs)
        self.boxes = lambda: None  # () -> a detector's box explained, [(label, box)] (session.outputs)
        self._explain: Job | None = None
        self._explaining: list[str] = []  # the methods the running explanation computes
        self._done: list[str] = []  # ... and those of them finished
        self._started = 0.0
        self._on_event = route(
            "explanation", {"map": self._got_map, "preview": self._got_preview, "series": self._got_series}
        )
        state.events.target.connect(self._on_target)
        state.events.frame.connect(self._on_frame)

    def run_methods(self, methods: Sequence[str] | None = None) -> Job | None:
        """Compute the maps of ``methods`` (default: the ticked ones) not yet in the cache, for the
        target on the slice on screen, the fast ones first. Before the prediction has come, the run
        waits for it."""
        image, target, manifest = self.state.image, self.state.target, self.model.manifest_path
        if image is None or manifest is None:
            self.reports.message.emit("Open an image and choose a model first", 5000)
            return None
        if not target:
            self.model.when_predicted(lambda: self.run_methods(methods))
            self.reports.message.emit("Waiting for the model's prediction...", 5000)
            return None
        methods = list(methods or self.methods)
        self.state.layer_held = False  # a new run shows its newest maps as they come
        frame, model = self.state.frame, self.state.model
        missing = self.cache.missing(id(image), frame, model, target, methods)
        missing.sort(key=lambda m: (is_slow(m), typical_seconds(m) if is_slow(m) else 0.0))
        self.layers.rebuild()
        if not missing:
            self.maps_shown.emit()
            return None
        current = self._explain
        boxes = self.boxes()
        where = tuple((label, tuple(box)) for label, box in boxes or ())
        request = (id(image), frame, model, target, tuple(missing), where)
        if current is not None and not current.cancelled and current.request == request:
            return current  # the same request is already running: latest wins, it is the latest
        self._explaining, self._done = missing, []
        store, seed, anytime, regions = self.model.store, self.seed, self.anytime, self.regions()
        job = Job(
            "explain",
            lambda job: tasks.explain_frame(
                job, store, manifest, image, frame, target, missing, seed, anytime, regions, boxes
            ),
            "Explanation",
            on_event=self._on_event,
            on_progress=lambda step, f: self._on_explain_progress(step, f),
            on_done=lambda status: self._on_explained(job, status),
        )
        job.request = request
        return self._start(job, f"Computing {len(missing)} methods...")

    def explain_series(
        self, methods: Sequence[str] | None = None, targets: Sequence[str] | None = None, *, show=False
    ) -> Job | None:
        """Maps of ``methods`` (default: the ticked ones) over every frame of the image on screen,
        each on one scale across the series, for ``targets`` (default: the target, or in a session
        that does not predict on open the top prediction of the explanation's own forward, so the
        network runs once for both); announced by
        ``series_explained`` (and ``show``-n as layers as they come: the fast methods over every
        slice first, see ``series_run``). What ``saliency-viewer explain`` writes."""
        image, manifest = self.state.image, self.model.manifest_path
        if image is None or manifest is None:
            self.reports.message.emit("Open an image and choose a model first", 5000)
            return None
        chooses = not self.model.predict_on_open  # no prediction comes: the engine's forward picks the target
        if not (targets or self.state.target or chooses):
            self.model.when_predicted(lambda: self.explain_series(methods, targets, show=show))
            return None
        methods = list(methods or self.methods)
        targets = list(targets or ([] if chooses else [self.state.target]))  # []: the top prediction
        store, seed, around, known, anytime = self.model.store, self.seed, self.state.frame, {}, self.anytime
        for target in targets if show else ():  # what the cache holds is kept, not recomputed
            for smap in self.cache.find(id(image), self.state.model, target):
                known.setdefault((smap.method, target), []).append(smap)
        if show:
            self.state.layer_held = False
        self._explaining, self._done = methods, []
        job = Job(
            "explain",
            lambda job: tasks.explain_series(
                job,
                store,
                manifest,
                image,
                methods,
                targets,
                seed,
                show,
                around=around,
                known=known,
                anytime=anytime,
            ),
            "Explanation",
            on_event=self._on_event,
            on_progress=lambda step, f: self.reports.progress.emit("explain", step, f),
            on_done=lambda status: self._on_explained(job, status, slices=image.n_frames),
        )
        return self._start(job, f"Computing {len(methods)} methods on {image.n_frames} slices...")

    def _start(self, job: Job, status: str) -> Job:
        self._started = time.monotonic()
        self._explain = job
        self.explaining.emit(True)
        self.method_status.emit(status)
        return self.runner.submit(job)

    def _got_series(self, payload) -> None:
        image, result = payload
        if image is self.state.image:
            self.series_explained.emit(image, result)

    def cancel(self) -> None:
        """Stop the running explanation (and scoring) at once; its unfinished estimates go."""
        self.model.drop_pending()
        running = self._explain is not None
        self._explain = None  # what the stopped job still reports is not this run's any more
        self.runner.cancel("explain")
        self.runner.cancel("scores")
        self.layers.drop_previews()
        self.explaining.emit(False)
        self.method_status.emit("Cancelled")
        if running:
            self.reports.message.emit("Cancelled", 3000)

    def drop(self) -> None:
        """A new image: the running explanation is of the old one; nothing of it is said."""
        self._explain = None
        self.runner.cancel("explain")
        self.layers.drop_previews()
        self.explaining.emit(False)
        self.method_status.emit("")

    def _got_map(self, payload) -> None:
        smap, indices = payload
        image = self.state.image
        if image is None or smap.target != self.state.target:
            return
        self.cache.put(id(image), self.state.model, smap, indices)
        self._done.append(smap.method)
        self.layers.add(smap, indices)

    def _got_preview(self, payload) -> None:
        """An anytime method's estimate so far: shown in its layer, never cached."""
        smap, indices = payload
        if self.state.image is not None and smap.target == self.state.target:
            self.layers.preview(smap, indices)

    def _on_explain_progress(self, step: str, fraction: float) -> None:
        self.explain_progress.emit(len(self._done), len(self._explaining), step, fraction)

    def _on_explained(self, job: Job, status: str, slices: int = 0) -> None:
        if job is not self._explain:
            return  # superseded or cancelled: the newer run, or the cancel, reported for itself
        self._explain = None
        self.explaining.emit(False)
        self.reports.report_failure("Explanation", status)
        if status != "done":
            self.layers.drop_previews()
            self.method_status.emit("Cancelled" if status == "cancelled" else "Failed")
            return
        seconds = time.monotonic() - self._started
        computed = list(dict.fromkeys(self._done))
        where = f" on {slices} slices" if slices else ""
        self.method_status.emit(f"{len(computed)} maps{where} in {seconds:.1f} s")
        self.reports.message.emit(f"Computed {', '.join(map(title_of, computed))}{where}", 5000)
        if not slices:
            self.maps_shown.emit()

    def _on_target(self, target: str) -> None:
        self.runner.cancel("explain")
        self.layers.drop_previews()
        self.layers.rebuild()
        if self.run_on_open and target:
            self.run_methods()

    def _on_frame(self, _frame: int) -> None:
        self.layers.rebuild()
        image = self.state.image
        if self.run_on_open and self.state.target and image is not None and image.n_frames > 1:
            self.run_methods()
