"""Are the maps on screen stable? **Model > Stability of the maps...**, Qt-free.

Users report that Grad-CAM's and LIME's maps "didn't look very consistent" between runs and
trainings; this answers it for the film, slice and target on screen, by the protocol of
:mod:`viewer.explain.stability` (the one ``saliency-viewer stability`` writes):

- a method that draws random numbers (``Method.seeded``: LIME, RISE, SmoothGrad, ...) is compared
  across seeds: the session's seed and ``extra_seeds`` more (``seed + 1``, ``seed + 2``, ...);
- any other method is compared across the checkpoints of the model in use, where its manifest
  lists several (``weights = ["fold1.safetensors", ...]``: ``ModelManifest.checkpoints``);
- a method with neither is said to have nothing to compare, never given a made-up number.

Each method's result is the SSIM and Spearman of every pair of its maps and their means (the
Compare panel's "Stability (SSIM)" column), and two layers: ``<method>:agreement``, the per-pixel
mean of the protocol maps, and ``<method>:disagreement``, their per-pixel standard deviation
(where it is high the method's answer depends on the seed or checkpoint). The layers go through
the session's map cache, so they stay with their image, slice, model and target like any map.

The work runs in the background in its own lane (latest request wins); a result of a film, slice,
model or target no longer on screen is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from psygnal import Signal

from viewer.explain.engine import support_reason
from viewer.explain.registry import METHODS, title_of
from viewer.explain.saliency_map import SaliencyMap
from viewer.explain.stability import PairScore, agreement, pair_scores
from viewer.explain.stability_runs import one_map
from viewer.inference.model import LoadedModel
from viewer.state.layers import display_indices
from viewer.state.runner import Job

LANE = "stability"
PARTS = ("agreement", "disagreement")  # the two layers of each compared method, in that order
# The largest value each statistic of maps in [0, 1] can take: the mean 1, the standard deviation 0.5.
STATISTIC_RANGE = {"agreement": 1.0, "disagreement": 0.5}


def derived_id(method: str, part: str) -> str:
    """The layer id of ``method``'s ``part`` (one of ``PARTS``): ``"gradcam:agreement"``."""
    return f"{method}:{part}"


@dataclass(frozen=True)
class MethodStability:
    """How alike one method's maps of the slice on screen are across seeds or checkpoints.

    ``compared`` is ``"seeds"`` or ``"checkpoints"``; ``names`` the maps compared (``"seed 3"``,
    a checkpoint's file stem) and ``seeds`` the seed each map was computed with."""

    method: str
    compared: str
    names: tuple[str, ...]
    seeds: tuple[int, ...]
    pairs: tuple[PairScore, ...]
    seconds: float

    @property
    def ssim(self) -> float:
        """Mean SSIM over the pairs."""
        return float(np.mean([p.ssim for p in self.pairs]))

    @property
    def spearman(self) -> float:
        """Mean Spearman rank correlation over the pairs."""
        return float(np.mean([p.spearman for p in self.pairs]))


def _derived(
    method: str,
    part: str,
    like: SaliencyMap,
    native: np.ndarray,
    grid: np.ndarray,
    notes: list[str],
    seconds: float,
) -> SaliencyMap:
    """A per-pixel statistic of ``method``'s maps as a map of its own, on the protocol's fixed
    scale, never stretched to its own maximum: stretched, a method whose checkpoints agree to the
    third decimal showed a disagreement layer as red as one whose maps have nothing in common (seen
    on the real window). The mean of maps in [0, 1] stays as it is; the standard deviation is
    divided by 0.5, the largest it can be (half the maps 0, half 1), so 1 on the colour bar is
    "as far apart as maps can be". ``scale`` holds the divisor: ``frame * scale`` is the statistic.
    ``seconds`` is what the compared maps cost (the layer list showed "0.00 s" before)."""
    div = np.float32(STATISTIC_RANGE[part])
    return SaliencyMap(
        derived_id(method, part),
        like.target,
        like.target_index,
        like.frames,
        (native / div)[None].astype(np.float32),
        (grid / div)[None].astype(np.float32),
        "unit",
        float(div),
        seconds,
        class_sensitive=like.class_sensitive,
        params={"of": method, "statistic": "mean" if part == "agreement" else "standard deviation"},
        notes=list(notes),
    )


def compare_maps(
    method: str, runs: dict[str, tuple[LoadedModel, int]], image, frame: int, target: str, compared: str
) -> tuple[MethodStability, list[SaliencyMap]]:
    """``method``'s map under each run (name -> model, seed), their pair scores, and the agreement
    and disagreement maps (on the image's grid and on the model's, as every map has both)."""
    start = time.perf_counter()
    maps = {name: one_map(model, image, method, target, frame, seed) for name, (model, seed) in runs.items()}
    native = {name: smap.frame(frame) for name, smap in maps.items()}
    result = MethodStability(
        method,
        compared,
        tuple(runs),
        tuple(seed for _model, seed in runs.values()),
        tuple(pair_scores(native)),
        time.perf_counter() - start,
    )
    mean, std = agreement(native.values())
    grid_mean, grid_std = agreement(smap.frame_grid(frame) for smap in maps.values())
    note = f"over {len(maps)} {compared} of {title_of(method)}: {', '.join(runs)}"
    first = next(iter(maps.values()))
    cost, spread = result.seconds, f"Per-pixel standard deviation {note}"
    return result, [
        _derived(method, "agreement", first, mean, grid_mean, [f"Per-pixel mean {note}"], cost),
        _derived(method, "disagreement", first, std, grid_std, [spread], cost),
    ]


def checkpoint_models(model: LoadedModel, loaded: dict) -> dict[str, LoadedModel]:
    """The model's checkpoints by file stem, the first being ``model`` itself; the others are
    loaded once and kept in ``loaded`` (by manifest and weights path), on ``model``'s device."""
    out = {}
    for weights in model.manifest.checkpoints or (model.manifest.weights,):
        if weights == model.manifest.weights:
            out[weights.stem] = model
            continue
        key = (model.manifest.path, weights)
        if key not in loaded:
            loaded[key] = LoadedModel(model.manifest.checkpoint(weights), model.device)
        out[weights.stem] = loaded[key]
    return out


def stability_task(job, store, loaded: dict, manifest, image, frame, target, methods, seeds) -> None:
    """The background work: emits ``stability`` ``(MethodStability, [(map, display indices)])`` per
    method compared and ``skipped`` ``(method, why)`` per method that could not be."""
    model = store.get(manifest)
    checkpoints: dict[str, LoadedModel] | None = None
    for n, method in enumerate(methods):
        job.check()
        job.progress(title_of(method), n / len(methods))
        reason = support_reason(METHODS[method], model)
        if reason is not None:
            job.emit("skipped", (method, reason))
            continue
        if METHODS[method].seeded and len(seeds) > 1:
            runs, compared = {f"seed {s}": (model, s) for s in seeds}, "seeds"
        else:
            checkpoints = checkpoints if checkpoints is not None else checkpoint_models(model, loaded)
            if len(checkpoints) < 2:
                why = "not a random method and the model lists one checkpoint: nothing to compare"
                job.emit("skipped", (method, why))
                continue
            runs, compared = {name: (m, seeds[0]) for name, m in checkpoints.items()}, "checkpoints"
        result, derived = compare_maps(method, runs, image, frame, target, compared)
        job.check()
        job.emit("stability", (result, [(smap, display_indices(smap)) for smap in derived]))


@dataclass
class _Request:
    image: object
    frame: int
    model: str
    target: str
    results: dict[str, MethodStability] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def key(self) -> tuple:
        return (id(self.image), self.frame, self.model, self.target)


class MapStability:
    """The session's stability of the maps on screen (see the module)."""

    changed = Signal()  # results came, or were dropped
    status_changed = Signal(str)
    running_changed = Signal(bool)

    def __init__(self, session) -> None:
        self.session = session
        self.running = False
        self.status = ""
        self._request: _Request | None = None
        self._job: Job | None = None
        self._loaded: dict = {}  # other checkpoints loaded, by (manifest, weights) (worker thread only)

    def _here(self) -> tuple:
        state = self.session.state
        return (id(state.image), state.frame, state.model, state.target)

    def results(self) -> dict[str, MethodStability]:
        """Method -> its stability on the slice, model and target on screen (empty: none computed)."""
        request = self._request
        return request.results if request is not None and request.key() == self._here() else {}

    def skipped(self) -> dict[str, str]:
        """Method -> why it was not compared on the slice on screen."""
        request = self._request
        return request.skipped if request is not None and request.key() == self._here() else {}

    def start(self, methods: Sequence[str] | None = None, extra_seeds: int = 2) -> Job | None:
        """Compare the maps of ``methods`` (default: the ticked ones) on the slice on screen: the
        random ones over the session's seed and ``extra_seeds`` more, the others over the model's
        checkpoints. Waits for the prediction (the target) when it has not come yet."""
        session = self.session
        state, manifest = session.state, session.model.manifest_path
        if state.image is None or manifest is None:
            self._say("Open an image and choose a model first")
            return None
        if not state.target:
            session.model.when_predicted(lambda: self.start(methods, extra_seeds))
            self._say("Waiting for the model's prediction...")
            return None
        methods = [m for m in (methods or session.explanation.methods) if m in METHODS]
        seeds = [session.explanation.seed + i for i in range(max(0, extra_seeds) + 1)]
        request = self._request = _Request(state.image, state.frame, state.model, state.target)
        store, loaded, image = session.model.store, self._loaded, state.image
        frame, target = state.frame, state.target
        job = Job(
            LANE,
            lambda job: stability_task(job, store, loaded, manifest, image, frame, target, methods, seeds),
            "Stability of the maps",
            on_event=lambda kind, payload: self._on_event(request, kind, payload),
            on_progress=lambda step, f: self._on_progress(request, step, f),
            on_done=lambda status: self._on_done(request, status),
        )
        self._job = job
        self._set_running(True)
        self._say(f"Comparing the maps of {len(methods)} methods...")
        self.changed.emit()
        return session.runner.submit(job)

    def cancel(self) -> None:
        self.session.runner.cancel(LANE)

    def _on_event(self, request: _Request, kind: str, payload) -> None:
        if request is not self._request:
            return
        if kind == "skipped":
            method, why = payload
            request.skipped[method] = why
            return
        result, derived = payload
        request.results[result.method] = result
        session = self.session
        if request.key() == self._here():  # the layers only on the slice they are of
            for smap, indices in derived:
                session.cache.put(id(request.image), request.model, smap, indices)
                session.layers.add(smap, indices)
        self.changed.emit()

    def _on_progress(self, request: _Request, step: str, fraction: float) -> None:
        if request is self._request:
            self._say(f"Stability of the maps: {step} ({fraction:.0%})")

    def _on_done(self, request: _Request, status: str) -> None:
        if request is not self._request:
            return
        self._set_running(False)
        if status.startswith("failed"):
            self._say(f"Stability failed: {status.removeprefix('failed: ')}")
        elif status == "cancelled":
            self._say("Stability cancelled")
        else:
            self._say(summary_text(request.results, request.skipped))
        self.changed.emit()
        if status == "done" and request.results and request.key() == self._here():
            self.session.explanation.maps_shown.emit()  # new layers are in the state: the views compare them

    def _set_running(self, running: bool) -> None:
        self.running = running
        self.running_changed.emit(running)

    def _say(self, text: str) -> None:
        self.status = text
        self.status_changed.emit(text)
        self.session.reports.message.emit(text, 8000)


def summary_text(results: dict[str, MethodStability], skipped: dict[str, str]) -> str:
    """One line on what was compared: each method's mean SSIM and over what, and what was not."""
    parts = [
        f"{title_of(m)} SSIM {r.ssim:.3f}, Spearman {r.spearman:.3f} over {len(r.names)} {r.compared}"
        for m, r in results.items()
    ]
    parts += [f"{title_of(m)}: {why}" for m, why in skipped.items()]
    return "; ".join(parts) if parts else "Nothing to compare"


__all__ = ["LANE", "PARTS", "MapStability", "MethodStability", "derived_id", "stability_task", "summary_text"]
