"""The viewer session: what the user opened, the model in use and what it said, the target, the
maps and the annotation. No Qt.

The session is the application's logic; the Qt window is a view of it (napari's ``ViewerModel``
and its ``QtViewer``). It owns the :class:`ViewerState` that views draw, schedules background work
through a :class:`~viewer.state.runner.Runner` and announces what happened through psygnal signals.
The GUI drives it with the Qt ``JobRunner``; tests drive it with the ``InlineRunner``, no Qt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from psygnal import Signal

from viewer.explain import DEFAULT_METHODS
from viewer.inference.manifest import ManifestError, ModelManifest
from viewer.inference.model import LoadedModel, Prediction
from viewer.inference.trust import TrustRequest, trust
from viewer.io.discovery import Discovery
from viewer.io.image import Image
from viewer.io.label_vocabulary import LabelMatcher
from viewer.state import tasks
from viewer.state.layer_book import LayerBook
from viewer.state.map_cache import MapCache
from viewer.state.map_stability import MapStability
from viewer.state.model_catalog import ModelCatalog
from viewer.state.model_chooser import ModelChoice, ModelChooser
from viewer.state.runner import InlineRunner, Job, Runner
from viewer.state.session_annotation import AnnotationCommands
from viewer.state.session_explain import ExplainCommands
from viewer.state.session_opening import OpeningCommands
from viewer.state.viewer_state import ViewerState


class ViewerSession(AnnotationCommands, OpeningCommands, ExplainCommands):
    """One user's session. Signals (psygnal) tell views what changed; all are emitted on the
    thread that owns the session (the GUI thread)."""

    discovered = Signal(object)  # Discovery: the series found under the opened paths
    thumbnails = Signal(list)  # [(series index, uint8 picture)], a batch at a time
    opened = Signal(int, object)  # series index, Image: now on screen
    model_changed = Signal(str)  # the name of the model in use
    models_changed = Signal()  # a model was added to the catalog
    predicted = Signal(object)  # Prediction of the image on screen, or None while there is none
    support_changed = Signal(dict)  # method id -> why it cannot explain the model (None: it can)
    caution_changed = Signal(object)  # the model's caution about the image on screen, or None
    progress = Signal(str, str, float)  # lane ("open", "load"), step, fraction
    explain_progress = Signal(int, int, str, float)  # maps done, maps asked, method, its fraction
    explaining = Signal(bool)  # an explanation started (True) or ended
    method_status = Signal(str)  # one line about the last explanation
    maps_shown = Signal()  # an explanation finished and its layers are in the state
    series_explained = Signal(object, object)  # Image, Explanation over all its frames
    message = Signal(str, int)  # a status line, shown for so many ms
    error = Signal(str)  # something went wrong, said so a user can act on it
    trust_needed = Signal(object)  # TrustRequest: a model file that may run code, to load only if trusted
    model_question = Signal(object)  # ModelQuestion: which model for images without a modality
    problems_found = Signal(list)  # Problems (files, annotations) to list
    problems_cleared = Signal()

    def __init__(
        self,
        runner: Runner,
        *,
        store: tasks.ModelStore | None = None,
        catalog: ModelCatalog | None = None,
        cache: MapCache | None = None,
    ) -> None:
        self.runner = runner
        self.state = ViewerState()
        self.store = store or tasks.ModelStore()
        self.catalog = catalog or ModelCatalog()
        self.chooser = ModelChooser(self.catalog)
        self.choice: ModelChoice | None = None  # how the model for the image on screen was chosen
        self.cache = cache or MapCache()
        self.layers = LayerBook(self.state, self.cache)
        self.stability = MapStability(self)  # Model > Stability of the maps...
        self.discovery: Discovery | None = None
        self.series_index = -1
        self.opens = 0  # how often something was opened: what arrives later is added only to its own
        self._discovered_for = -1  # ... and the opening whose discovery is here
        self._early: list[Discovery] = []  # additions that came before their opening's discovery
        self.prediction: Prediction | None = None
        self.caution: str | None = None
        self.errors: list[str] = []  # everything that went wrong, for headless runs and tests
        # Preferences the user sets in the panels (saved by the GUI between runs).
        self.methods: list[str] = list(DEFAULT_METHODS)  # ticked in the method list
        self.run_on_open = False  # compute the ticked methods on each new image, slice or target
        self.seed = 0
        # What opening does besides showing the image; a batch run (the CLI) turns both off.
        self.make_thumbnails = True  # pictures of every series found, for the browser
        self.model_for_modality = True  # switch to a model made for the opened image's modality
        # Predict each opened image at once (the panel shows it). A batch explanation run turns it
        # off: the engine's own recorded forward gives the probabilities and the default target,
        # so a film goes through the network once for both, not twice (issue 38).
        self.predict_on_open = True
        self._explain: Job | None = None
        self._explaining: list[str] = []  # the methods the running explanation computes
        self._done: list[str] = []  # ... and those of them finished
        self._pending: Callable[[], object] | None = None  # a run waiting for the prediction
        self._matcher: tuple[Path | None, LabelMatcher | None] = (None, None)
        self.state.model = next(iter(self.catalog.models), "")
        events = self.state.events
        events.target.connect(self._on_target)
        events.frame.connect(self._on_frame)

    @classmethod
    def batch(cls, model: LoadedModel, *, seed: int = 0, predict: bool = True) -> ViewerSession:
        """A session for a batch run (the CLI): work done inline, ``model`` (already loaded, on its
        own device) used throughout, no thumbnails. Without ``predict``, an opened image is not
        predicted on its own: ``explain_series`` then leaves the target (the top prediction) to the
        explanation's forward pass, which also gives the probabilities."""
        session = cls(InlineRunner())
        session.store.put(model)
        session.make_thumbnails = session.model_for_modality = False
        session.predict_on_open = predict
        session.seed = seed
        session._use_model(session.catalog.name_of(model.manifest.path))
        return session

    # --- what is open -------------------------------------------------------------------------
    def open_paths(self, paths: Sequence[str | Path]) -> Job:
        """Find the series under ``paths`` and open the first; the rest get thumbnails."""
        paths = [str(p) for p in paths]
        self.opens += 1
        self._early = []
        self.problems_cleared.emit()
        self.message.emit(f"Opening {', '.join(Path(p).name for p in paths)}...", 0)
        self.runner.cancel("explain")
        self.runner.cancel("load")
        self.runner.cancel("thumbnails")
        return self.runner.submit(
            Job(
                "open",
                lambda job: tasks.open_paths(job, paths),
                "Opening",
                on_event=self._on_event,
                on_progress=lambda step, f: self.progress.emit("open", step, f),
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
            self.problems_found.emit(list(found.problems))
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
                on_progress=lambda step, f: self.progress.emit("load", step, f),
                on_done=lambda status: self._report_failure("Loading", status),
            )
        )

    def _on_event(self, kind: str, payload) -> None:
        """A background job's result (``job.emit(kind, payload)`` in :mod:`~viewer.state.tasks`),
        to the handler of its kind."""
        handlers = {
            "discovered": self._got_discovered,
            "thumbnails": self._got_thumbnails,
            "loaded": self._got_loaded,
            "failed": self._got_failed,
            "untrusted": self._got_untrusted,
            "support": self._got_support,
            "prediction": self._got_prediction,
            "map": self._got_map,
            "preview": self._got_preview,
            "series": self._got_series,
            "annotation_file": self._got_annotation_file,
            "annotation_failed": self._got_annotation_failed,
        }
        if kind not in handlers:
            raise KeyError(f"no session handler for a job's {kind!r} result (known: {', '.join(handlers)})")
        handlers[kind](payload)

    def _on_opened(self, status: str) -> None:
        self._report_failure("Opening", status)
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
                on_done=lambda s: s == "done" and self.message.emit(f"Opened {len(series)} series", 5000),
            )
        )

    def _got_discovered(self, found: Discovery) -> None:
        found, self._early, self._discovered_for = sum(self._early, found), [], self.opens
        self.discovery = found
        self.series_index = -1
        self.discovered.emit(found)
        if found.problems:
            self.problems_found.emit(list(found.problems))
        self._offer_annotations(found)  # annotation files beside the images: loaded, kept
        if not found.series:
            skipped = f"; {len(found.problems)} file(s) skipped" if found.problems else ""
            self.report_error(f"No images found{skipped}")

    def _got_thumbnails(self, batch: list) -> None:
        self.thumbnails.emit(batch)

    def _got_loaded(self, payload: tuple[int, Image]) -> None:
        index, image = payload
        # A new image cancels stale work: a map of the old one must never land on it.
        self._drop_explanation()  # ... nor what was said about it
        self.runner.cancel("scores")
        self.runner.cancel("predict")
        self.series_index = index
        self._set_prediction(None)
        chooser, model = self.chooser, self.state.model
        self.choice = chooser.choose(image, model, self.discovery, index) if self.model_for_modality else None
        if self.choice is not None and self.choice.model is not None:
            self._use_model(self.choice.model)  # no prediction yet: the image it is for is not open
            self.message.emit(f"Model {self.choice.model} chosen for {self.choice.images}", 8000)
        self.state.open(image)
        self.show_annotation_of(image)  # the loaded annotation files' regions on it, and those drawn
        self._update_caution()
        if image.left_out:
            self.problems_found.emit(list(image.left_out))
        frames = f", {image.n_frames} images" if image.n_frames > 1 else ""
        kind = image.identity.modality or image.kind
        self.message.emit(f"Opened {kind} {image.rows} x {image.columns}{frames}", 5000)
        self.opened.emit(index, image)
        if self.predict_on_open:
            self._predict()
        if self.choice is not None and self.choice.question is not None:
            self.model_question.emit(self.choice.question)

    def answer_model_question(self, model: str) -> None:
        """The user's model for images without a modality (see ``ModelChooser``), used from now."""
        self.chooser.answer(model)
        image = self.state.image
        self.choice = self.chooser.choose(image, model) if image is not None else None
        self.choose_model(model)

    # --- the model ------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path | None:
        return self.catalog.path(self.state.model)

    def manifest(self) -> ModelManifest | None:
        path = self.manifest_path
        try:
            return self.catalog.manifest(path) if path is not None else None
        except (ManifestError, OSError):
            return None

    @property
    def matcher(self) -> LabelMatcher | None:
        """Matches annotation labels to the model's (public vocabularies and its aliases)."""
        path = self.manifest_path
        if self._matcher[0] != path:
            manifest = self.manifest()
            self._matcher = (path, manifest.label_matcher() if manifest is not None else None)
        return self._matcher[1]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.prediction.labels) if self.prediction is not None else ()

    def choose_model(self, name: str) -> bool:
        """Use the model ``name`` (a catalog entry) and predict the image on screen with it."""
        if self.catalog.path(name) is None:
            self.report_error(f"No model named {name!r}; known: {', '.join(self.catalog.models)}")
            return False
        self.runner.cancel("explain")
        self._use_model(name)
        self._predict()
        return True

    def add_model(self, manifest_path: str | Path) -> bool:
        """Add a user model by its manifest and use it."""
        try:
            name = self.catalog.add(manifest_path)
        except (ManifestError, OSError) as exc:
            self.report_error(f"Cannot add the model: {exc}")
            return False
        self.models_changed.emit()
        return self.choose_model(name)

    def hold_model(self, model: LoadedModel) -> str:
        """List and use a model already loaded in this process (a notebook's network, see
        :mod:`viewer.inference.in_memory`): the store keeps it under its placeholder path, so
        predictions and maps run on it in the background as on any model, and nothing reads,
        trusts or remembers a file for it. Its catalog name."""
        name = self.catalog.add_in_memory(model.manifest)
        self.store.put(model)
        self.models_changed.emit()
        self.choose_model(name)
        return name

    def _use_model(self, name: str) -> None:
        self.state.layers.clear()
        self._set_prediction(None)
        self.state.model = name
        self.model_changed.emit(name)

    def _predict(self) -> None:
        image, manifest = self.state.image, self.manifest_path
        if image is None or manifest is None:
            return
        store = self.store
        self.runner.submit(
            Job(
                "predict",
                lambda job: tasks.predict(job, store, manifest, image),
                "Prediction",
                on_event=self._on_event,
                on_done=lambda status: self._report_failure("Prediction", status),
            )
        )

    def _got_untrusted(self, request: TrustRequest) -> None:
        self.trust_needed.emit(request)

    def trust_model(self, request: TrustRequest) -> None:
        """The user trusts ``request.weights``, this exact file, to run what it runs: record it
        (see :mod:`viewer.inference.trust`) and load the model."""
        trust(request.weights, list(request.operators))
        self.message.emit(f"Trusted {request.weights.name}", 5000)
        self._predict()

    def _got_support(self, reasons: dict[str, str | None]) -> None:
        self.support_changed.emit(reasons)

    def _got_prediction(self, prediction: Prediction) -> None:
        self._set_prediction(prediction)
        self._update_caution()
        if self.state.target not in prediction.labels:
            self.state.target = prediction.default_target()
        if self._pending is not None:
            run, self._pending = self._pending, None
            run()

    def _set_prediction(self, prediction: Prediction | None) -> None:
        self.prediction = prediction
        self.predicted.emit(prediction)

    def probability(self, label: str | None = None) -> float | None:
        """The model's probability of ``label`` (default: the target) on the slice on screen."""
        label = label or self.state.target
        if self.prediction is None or label not in self.prediction.labels:
            return None
        return float(self.prediction.probabilities[self.state.frame, self.prediction.labels.index(label)])

    def _update_caution(self) -> None:
        """On a new image and on each prediction (a new model): what a user must know of the model
        on this image (synthetic-only, an assumed modality, another modality) is said in the panel
        and in every export."""
        self.caution = self.chooser.caution(self.state.model, self.state.image, self.choice)
        self.caution_changed.emit(self.caution)

    # --- explanations: ExplainCommands (session_explain.py) ---------------------------------

    # --- reporting ------------------------------------------------------------------------------
    def _report_failure(self, what: str, status: str) -> None:
        if status.startswith("failed"):
            self.report_error(f"{what} failed: {status.removeprefix('failed: ')}")

    def report_error(self, message: str) -> None:
        self.errors.append(message)
        self.error.emit(message)
