"""The Compare tab's numbers for the slice on screen: ``session.comparison``. No Qt.

Each computed map of the target is scored in the background (pointing game, IoU, energy inside the
annotation, deletion/insertion AUC, the randomisation sanity verdict when asked: the same
``score_map`` as ``saliency-viewer explain``), then the maps are compared with each other: each
map's mean Spearman agreement with the others (``mean_agreement``, the ``agreement`` column of
explain's metrics.csv). The panel only draws what this model holds; the steps and the sanity
choice are the panel's settings, passed in when it asks for scores.

Derived layers (the stability panel's ``<method>:agreement`` and ``<method>:disagreement``) are
statistics of other maps, not explanations: they are shown but never scored nor compared. While
no map is on screen, the status says whether maps are being computed (:func:`no_maps_text`): a
re-run must not be told to "run some methods".
"""

from __future__ import annotations

import numpy as np
from psygnal import Signal

from viewer.explain.comparison import mean_agreement
from viewer.state import tasks
from viewer.state.explanation_runs import ExplanationRuns
from viewer.state.layers import SaliencyLayer
from viewer.state.map_stability import PARTS, MapStability
from viewer.state.model_in_use import ModelInUse
from viewer.state.runner import Job, Runner, route
from viewer.state.viewer_state import ViewerState

LANE = "scores"


def no_maps_text(has_image: bool, computing: bool, count: int = 0) -> str:
    """What the comparison says while no map of this slice is on screen: that maps (``count`` of
    them, where known) are being computed, or that there are none to compare."""
    if not has_image:
        return ""
    if computing:
        maps = f"{count} map{'s' if count != 1 else ''}" if count else "the maps"
        return f"Computing {maps}: they are compared once they are done"
    return "Run some methods to compare them"


def is_derived(method: str) -> bool:
    """A layer made from other maps (``"gradcam:agreement"``), not a method's explanation."""
    return method.rpartition(":")[2] in PARTS and ":" in method


class ComparisonModel:
    """``scores`` (method -> its MapScores) and ``agreement`` (method -> mean rho, or None) of the
    maps on the slice on screen; ``status`` says what is going on. ``dirty`` until scored since the
    last change (the panel scores only while it is visible)."""

    changed = Signal()  # scores or agreement came, or were dropped
    status_changed = Signal(str)
    scored = Signal()  # a scoring finished: every map's numbers are in

    def __init__(
        self,
        state: ViewerState,
        runner: Runner,
        model: ModelInUse,
        explanation: ExplanationRuns,
        stability: MapStability,
    ) -> None:
        self.state, self.runner, self.model, self.stability = state, runner, model, stability
        self.scores: dict[str, object] = {}
        self.agreement: dict[str, float | None] = {}
        self.status = ""
        self.dirty = True
        self.computing: tuple[bool, int] = (False, 0)  # an explanation is running, of so many maps
        self._on_event = route("comparison", {"score": self._got_score, "agreement": self._got_agreement})
        explanation.explaining.connect(self._on_explaining)
        explanation.explain_progress.connect(lambda _done, total, *_: self._on_explaining(True, total))
        state.events.image.connect(lambda *_: self.clear())

    # --- what is compared ------------------------------------------------------------------------
    def layers(self) -> list[SaliencyLayer]:
        """The layers with a map on the slice on screen, derived ones included (they are drawn)."""
        return [layer for layer in self.state.layers if layer.values(self.state.frame) is not None]

    def scored_layers(self) -> list[SaliencyLayer]:
        """The layers whose maps are scored and compared: explanations, not derived layers."""
        return [layer for layer in self.layers() if not is_derived(layer.method)]

    def masks(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The annotation of the target on this frame, and a known burned-in marker."""
        image, annotation = self.state.image, self.state.annotation
        if image is None or annotation is None:
            return None, None
        mask = annotation.mask(image, self.state.target, self.model.matcher)[self.state.frame]
        marker = annotation.marker_mask(image)
        return (mask if mask.any() else None), (marker[self.state.frame] if marker is not None else None)

    def stability_ssim(self, method: str) -> float | None:
        """The method's mean SSIM across seeds or checkpoints on this slice, when computed."""
        result = self.stability.results().get(method)
        return result.ssim if result is not None else None

    # --- scoring ---------------------------------------------------------------------------------
    def clear(self) -> None:
        """A new image: nothing scored of the old one stays."""
        self.scores, self.agreement = {}, {}
        self.changed.emit()

    def score(self, steps: int = 50, sanity: bool = False) -> Job | None:
        """Score the maps on the slice on screen in the background (the ``scores`` lane: a new
        request supersedes the old), ``steps`` deletion/insertion steps, the sanity check if asked."""
        self.dirty = False
        image, layers, manifest = self.state.image, self.scored_layers(), self.model.manifest_path
        self.scores, self.agreement = {}, {}
        self.changed.emit()
        if image is None or not layers or manifest is None:
            self._say(no_maps_text(image is not None, *self.computing))
            self.runner.cancel(LANE)
            return None
        mask, marker = self.masks()
        maps = [layer.map_for(self.state.frame) for layer in layers]
        frame, store = self.state.frame, self.model.store
        self._say(self.no_annotation_text() if mask is None else "Scoring...")
        return self.runner.submit(
            Job(
                LANE,
                lambda job: tasks.score_maps(
                    job, store, manifest, image, frame, maps, mask, marker, steps, sanity
                ),
                "Scoring the maps",
                on_event=self._on_event,
                on_done=self._on_finished,
            )
        )

    def no_annotation_text(self) -> str:
        text = f"No annotation of '{self.state.target}' on this image: maps are compared with each other"
        image, annotation, matcher = self.state.image, self.state.annotation, self.model.matcher
        if image is not None and annotation is not None and matcher is not None:
            unmatched = matcher.unmatched(annotation.labels_on(image))
            if unmatched:
                text += f" (the annotation's {', '.join(unmatched)} match none of the model's labels)"
        return text

    def _got_score(self, scores) -> None:
        self.scores[scores.method] = scores
        self.changed.emit()

    def _got_agreement(self, payload) -> None:
        names, spearman, _ssim = payload
        self.agreement.update(mean_agreement(names, spearman))
        self.changed.emit()

    def _on_finished(self, status: str) -> None:
        if status == "done":
            mask, _ = self.masks()
            target = self.state.target
            text = (
                f"Scored against the annotation of '{target}'"
                if mask is not None
                else self.no_annotation_text()
            )
            flat = [s for s in self.scores.values() if s.faithfulness_uninformative]
            if flat:
                text += (
                    f". Blurring the whole image changes p('{target}') by only "
                    f"{abs(flat[0].substrate_drop):.3f}: deletion/insertion cannot rank these maps"
                )
            self._say(text)
            self.scored.emit()
        elif status.startswith("failed"):
            self._say(f"Scoring failed: {status.removeprefix('failed: ')}")

    def _on_explaining(self, running: bool, count: int = 0) -> None:
        """A run started or ended: while no map is on screen the status says which."""
        self.computing = (running, count)
        if not self.layers():
            self._say(no_maps_text(self.state.image is not None, running, count))

    def _say(self, text: str) -> None:
        self.status = text
        self.status_changed.emit(text)
