"""The viewer session: a small coordinator of typed parts, each with its own state and psygnal
events. No Qt.

The session is the application's logic; the Qt window is a view of it (napari's ``ViewerModel``
and its ``QtViewer``). It owns the :class:`ViewerState` that views draw and the runner that does
background work, and composes:

- ``opening`` (:class:`~viewer.state.opening.Opening`): what is open, the series found, loading;
- ``model`` (:class:`~viewer.state.model_in_use.ModelInUse`): the model in use, its prediction
  and caution;
- ``explanation`` (:class:`~viewer.state.explanation_runs.ExplanationRuns`): the methods, the
  running explanation, its maps in ``cache`` and ``layers``;
- ``annotation`` (:class:`~viewer.state.annotating.Annotating`): annotation files and drawn regions;
- ``stability`` (:class:`~viewer.state.map_stability.MapStability`): the maps across seeds;
- ``comparison`` (:class:`~viewer.state.comparison.ComparisonModel`): the Compare tab's scores
  and agreement of the maps on the slice on screen;
- ``crosshair`` (:class:`~viewer.state.crosshair.Crosshair`): the MPR point, display volumes and
  the MIP choice; ``measurements`` (:class:`~viewer.state.measurement_book.MeasurementBook`);
  ``slices`` (:class:`~viewer.state.slice_profile.SliceProfile`): what the slice strip paints;
- ``outputs`` (:class:`~viewer.state.model_outputs.ModelOutputs`): a segmenter's masks, a
  detector's boxes and the region the maps explain;
- ``reports`` (:class:`~viewer.state.reports.Reports`): status lines, progress, errors, problems.

A part's background jobs report to that part's own handler table, never through a string
dispatcher. The GUI drives the session with the Qt ``JobRunner``; tests drive it with the
``InlineRunner``, no Qt. The few natural entry points (open, choose a model, run, cancel) are
methods here; everything else is asked of the part that owns it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from viewer.inference.model import LoadedModel
from viewer.state import tasks
from viewer.state.annotating import Annotating
from viewer.state.comparison import ComparisonModel
from viewer.state.crosshair import Crosshair
from viewer.state.explanation_runs import ExplanationRuns
from viewer.state.layer_book import LayerBook
from viewer.state.map_cache import MapCache
from viewer.state.map_stability import MapStability
from viewer.state.measurement_book import MeasurementBook
from viewer.state.model_catalog import ModelCatalog
from viewer.state.model_in_use import ModelInUse
from viewer.state.model_outputs import ModelOutputs
from viewer.state.opening import Opening
from viewer.state.reports import Reports
from viewer.state.runner import InlineRunner, Job, Runner
from viewer.state.slice_profile import SliceProfile
from viewer.state.viewer_state import ViewerState


class ViewerSession:
    """One user's session: the parts, and the state and runner they share. Every event is
    emitted on the thread that owns the session (the GUI thread)."""

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
        self.reports = Reports()
        self.cache = cache or MapCache()
        self.layers = LayerBook(self.state, self.cache)
        self.model = ModelInUse(self.state, runner, self.reports, store=store, catalog=catalog)
        self.stability = MapStability(self)  # Model > Stability of the maps...
        self.explanation = ExplanationRuns(
            self.state, runner, self.reports, self.model, self.cache, self.layers
        )
        self.annotation = Annotating(
            self.state, runner, self.reports, self.model, found=lambda: self.opening.discovery
        )
        self.opening = Opening(
            self.state, runner, self.reports, self.model, self.explanation, self.annotation
        )
        self.comparison = ComparisonModel(self.state, runner, self.model, self.explanation, self.stability)
        # What the views of a series show: made here, so a widget binds to them and keeps none.
        self.crosshair = Crosshair(self.state)
        self.measurements = MeasurementBook(self.state)
        self.slices = SliceProfile(self.state, self.model)
        # The model's masks and boxes, and the region a segmenter's maps explain (issue 39).
        self.outputs = ModelOutputs(
            self.state, self.reports, self.model, self.explanation, self.cache, self.layers
        )

    @classmethod
    def batch(cls, model: LoadedModel, *, seed: int = 0, predict: bool = True) -> ViewerSession:
        """A session for a batch run (the CLI): work done inline, ``model`` (already loaded, on its
        own device) used throughout, no thumbnails. Without ``predict``, an opened image is not
        predicted on its own: ``explain_series`` then leaves the target (the top prediction) to the
        explanation's forward pass, which also gives the probabilities."""
        session = cls(InlineRunner())
        session.model.store.put(model)
        session.opening.make_thumbnails = session.model.for_modality = False
        session.model.predict_on_open = predict
        session.explanation.seed = seed
        session.model.use(session.model.catalog.name_of(model.manifest.path))
        return session

    # --- the entry points -------------------------------------------------------------------------
    def open_paths(self, paths: Sequence[str | Path]) -> Job:
        """Find the series under ``paths`` and open the first (see :meth:`Opening.open_paths`)."""
        return self.opening.open_paths(paths)

    def choose_model(self, name: str) -> bool:
        """Use the model ``name`` and predict the image on screen (see :meth:`ModelInUse.choose`)."""
        return self.model.choose(name)

    def run_methods(self, methods: Sequence[str] | None = None) -> Job | None:
        """Compute the ticked ``methods`` on the slice on screen (see
        :meth:`ExplanationRuns.run_methods`)."""
        return self.explanation.run_methods(methods)

    def cancel(self) -> None:
        """Stop the running explanation and scoring at once."""
        self.explanation.cancel()
