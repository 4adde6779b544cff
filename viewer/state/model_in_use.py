"""The model in use and what it said about the image on screen: ``session.model``, a part of
:class:`~viewer.state.session.ViewerSession`. It chooses the model (by name, by the image's
modality, or as the user answers), adds user and in-memory models, predicts in the background,
asks for trust before a file that may run code, and says the caution a user must read. No Qt.

A run that needs the prediction before it can start (no target yet) waits here
(:meth:`ModelInUse.when_predicted`) and starts when the prediction comes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from psygnal import Signal

from viewer.inference.manifest import ManifestError, ModelManifest
from viewer.inference.model import LoadedModel, Prediction
from viewer.inference.trust import TrustRequest, trust
from viewer.io.label_vocabulary import LabelMatcher
from viewer.state import tasks
from viewer.state.model_catalog import ModelCatalog
from viewer.state.model_chooser import ModelChoice, ModelChooser
from viewer.state.reports import Reports
from viewer.state.runner import Job, Runner, route
from viewer.state.viewer_state import ViewerState


class ModelInUse:
    """The catalog, the loaded models (``store``), the choice for the image on screen and its
    prediction and caution. ``state.model`` holds the name of the model in use."""

    model_changed = Signal(str)  # the name of the model in use
    models_changed = Signal()  # a model was added to the catalog
    predicted = Signal(object)  # Prediction of the image on screen, or None while there is none
    support_changed = Signal(dict)  # method id -> why it cannot explain the model (None: it can)
    caution_changed = Signal(object)  # the model's caution about the image on screen, or None
    trust_needed = Signal(object)  # TrustRequest: a model file that may run code, to load only if trusted
    model_question = Signal(object)  # ModelQuestion: which model for images without a modality

    def __init__(
        self,
        state: ViewerState,
        runner: Runner,
        reports: Reports,
        *,
        store: tasks.ModelStore | None = None,
        catalog: ModelCatalog | None = None,
    ) -> None:
        self.state, self.runner, self.reports = state, runner, reports
        self.store = store or tasks.ModelStore()
        self.catalog = catalog or ModelCatalog()
        self.chooser = ModelChooser(self.catalog)
        self.choice: ModelChoice | None = None  # how the model for the image on screen was chosen
        self.prediction: Prediction | None = None
        self.caution: str | None = None
        self.for_modality = True  # switch to a model made for the opened image's modality
        # Predict each opened image at once (the panel shows it). A batch explanation run turns it
        # off: the engine's own recorded forward gives the probabilities and the default target,
        # so a film goes through the network once for both, not twice (issue 38).
        self.predict_on_open = True
        self._pending: Callable[[], object] | None = None  # a run waiting for the prediction
        self._matcher: tuple[Path | None, LabelMatcher | None] = (None, None)
        self._on_event = route(
            "model",
            {
                "untrusted": self.trust_needed.emit,
                "support": self.support_changed.emit,
                "prediction": self._got_prediction,
            },
        )
        state.model = next(iter(self.catalog.models), "")

    # --- which model ------------------------------------------------------------------------------
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

    def choose(self, name: str) -> bool:
        """Use the model ``name`` (a catalog entry) and predict the image on screen with it."""
        if self.catalog.path(name) is None:
            self.reports.report_error(f"No model named {name!r}; known: {', '.join(self.catalog.models)}")
            return False
        self.runner.cancel("explain")
        self.use(name)
        self.predict()
        return True

    def add(self, manifest_path: str | Path) -> bool:
        """Add a user model by its manifest and use it."""
        try:
            name = self.catalog.add(manifest_path)
        except (ManifestError, OSError) as exc:
            self.reports.report_error(f"Cannot add the model: {exc}")
            return False
        self.models_changed.emit()
        return self.choose(name)

    def hold(self, model: LoadedModel) -> str:
        """List and use a model already loaded in this process (a notebook's network, see
        :mod:`viewer.inference.in_memory`): the store keeps it under its placeholder path, so
        predictions and maps run on it in the background as on any model, and nothing reads,
        trusts or remembers a file for it. Its catalog name."""
        name = self.catalog.add_in_memory(model.manifest)
        self.store.put(model)
        self.models_changed.emit()
        self.choose(name)
        return name

    def use(self, name: str) -> None:
        """Make ``name`` the model in use, without predicting (the image it is for may not be open
        yet): its layers and the old prediction go."""
        self.state.layers.clear()
        self.set_prediction(None)
        self.state.model = name
        self.model_changed.emit(name)

    def choose_for(self, image, discovery, index: int) -> None:
        """A new image opens: switch to the model made for its modality where one is (see
        :class:`ModelChooser`), and remember how the choice was made for the caution."""
        self.choice = (
            self.chooser.choose(image, self.state.model, discovery, index) if self.for_modality else None
        )
        if self.choice is not None and self.choice.model is not None:
            self.use(self.choice.model)
            self.reports.message.emit(f"Model {self.choice.model} chosen for {self.choice.images}", 8000)

    def ask_if_unsure(self) -> None:
        """Ask the user which model fits images without a modality, where the chooser could not tell."""
        if self.choice is not None and self.choice.question is not None:
            self.model_question.emit(self.choice.question)

    def answer_question(self, model: str) -> None:
        """The user's model for images without a modality (see ``ModelChooser``), used from now."""
        self.chooser.answer(model)
        image = self.state.image
        self.choice = self.chooser.choose(image, model) if image is not None else None
        self.choose(model)

    def trust(self, request: TrustRequest) -> None:
        """The user trusts ``request.weights``, this exact file, to run what it runs: record it
        (see :mod:`viewer.inference.trust`) and load the model."""
        trust(request.weights, list(request.operators))
        self.reports.message.emit(f"Trusted {request.weights.name}", 5000)
        self.predict()

    # --- what it said -----------------------------------------------------------------------------
    def predict(self) -> None:
        """Predict the image on screen in the background (the ``predict`` lane)."""
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
                on_done=lambda status: self.reports.report_failure("Prediction", status),
            )
        )

    def when_predicted(self, run: Callable[[], object]) -> None:
        """Start ``run`` once the prediction comes (it gives the default target); replaces any
        run already waiting: latest request wins."""
        self._pending = run

    def drop_pending(self) -> None:
        self._pending = None

    def _got_prediction(self, prediction: Prediction) -> None:
        self.set_prediction(prediction)
        self.update_caution()
        if self.state.target not in prediction.labels:
            self.state.target = prediction.default_target()
        if self._pending is not None:
            run, self._pending = self._pending, None
            run()

    def set_prediction(self, prediction: Prediction | None) -> None:
        self.prediction = prediction
        self.predicted.emit(prediction)

    def forget_image(self) -> None:
        """The image on screen went (a failed load): nothing said about it stays."""
        self._pending = None
        self.choice = None
        self.set_prediction(None)

    def probability(self, label: str | None = None) -> float | None:
        """The model's probability of ``label`` (default: the target) on the slice on screen."""
        label = label or self.state.target
        if self.prediction is None or label not in self.prediction.labels:
            return None
        return float(self.prediction.probabilities[self.state.frame, self.prediction.labels.index(label)])

    def update_caution(self) -> None:
        """On a new image and on each prediction (a new model): what a user must know of the model
        on this image (synthetic-only, an assumed modality, another modality) is said in the panel
        and in every export."""
        self.caution = self.chooser.caution(self.state.model, self.state.image, self.choice)
        self.caution_changed.emit(self.caution)
