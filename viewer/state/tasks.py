"""The work the viewer does in the background, as plain functions of a job. No Qt.

A job (``viewer.ui.worker.Job`` in the GUI; anything with the same four members in tests)
reports through ``emit(kind, payload)`` and ``progress(step, fraction)``, and ``check()`` raises
``Cancelled`` once the job is superseded; ``cancel`` is the flag the engine polls.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image as PILImage

from viewer.explain.engine import Explanation, explain, support_reason
from viewer.explain.registry import METHODS
from viewer.explain.saliency_map import SaliencyMap, on_one_scale
from viewer.inference.in_memory import is_in_memory
from viewer.inference.model import LoadedModel
from viewer.inference.trust import UntrustedModelError
from viewer.io.discovery import SeriesInfo, discover
from viewer.io.errors import LoadError
from viewer.io.image import Image
from viewer.io.loader import load_series
from viewer.io.voi import to_display
from viewer.state.layers import display_indices
from viewer.state.series_run import SeriesProgress, plan

THUMBNAIL_SIZE = 96
_THUMBNAIL_BATCH = 32
_THUMBNAIL_INTERVAL_S = 0.25


class JobLike(Protocol):
    cancel: threading.Event

    def emit(self, kind: str, payload: object = None) -> None: ...

    def progress(self, step: str, fraction: float) -> None: ...

    def check(self) -> None: ...


def open_paths(job: JobLike, paths: Sequence[str | Path]) -> None:
    """Discover the series under ``paths``; emits ``discovered`` (a Discovery), then ``loaded``
    ``(0, Image)`` for the first series. Thumbnails are a job of their own (``thumbnails``), queued
    after the first image's prediction: on a folder of 600 films the model answers at once."""
    found = discover(paths, progress=lambda f: job.progress("Scanning", f), cancelled=job.cancel.is_set)
    job.check()
    job.emit("discovered", found)
    if found.series:
        load(job, found.series[0], 0)


def thumbnails(
    job: JobLike, series: Sequence[SeriesInfo], opened: dict[int, Image], *, first: int = 0
) -> None:
    """Emits ``thumbnails``: lists of ``(index, uint8 array)``, batched so the GUI thread inserts
    many per turn of its event loop (the first at once). Series already ``opened`` (index ->
    image) are not decoded again for their picture. Indices count from ``first``: series added
    to those already in the browser."""
    batch: list[tuple[int, np.ndarray]] = []
    sent = -float("inf")
    for index, info in enumerate(series, first):
        job.check()
        try:
            picture = thumbnail_of(opened[index]) if index in opened else thumbnail(info)
        except LoadError:
            continue  # the browser keeps its text-only entry; the problem shows when it is opened
        batch.append((index, picture))
        if len(batch) >= _THUMBNAIL_BATCH or time.monotonic() - sent > _THUMBNAIL_INTERVAL_S:
            job.emit("thumbnails", batch)
            batch, sent = [], time.monotonic()
    if batch:
        job.emit("thumbnails", batch)


def load(job: JobLike, series: SeriesInfo, index: int) -> Image | None:
    """Decode one series; emits ``loaded`` ``(index, Image)``, or ``failed`` ``(index, reason)``;
    returns the image (None if it failed)."""
    try:
        image = load_series(
            series,
            progress=lambda f: job.progress("Loading", f),
            cancelled=job.cancel.is_set,
        )
    except LoadError as exc:
        job.emit("failed", (index, str(exc)))
        return None
    job.check()
    job.emit("loaded", (index, image))
    return image


def thumbnail(series: SeriesInfo, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """A small grey (or RGB) uint8 picture of a series' middle image, decoding only that file."""
    if series.records and len(series.records) > 1:
        series = replace(series, records=[series.records[len(series.records) // 2]], is_volume=False)
    return thumbnail_of(load_series(series), size)


def thumbnail_of(image: Image, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """The picture of an image already decoded (its middle frame, windowed, aspect kept)."""
    grey = to_display(image, image.n_frames // 2)
    picture = PILImage.fromarray(np.rint(np.clip(grey, 0, 1) * 255).astype(np.uint8))
    aspect = image.geometry.pixel_aspect
    width, height = image.columns, image.rows * aspect
    scale = size / max(width, height)
    picture = picture.resize((max(1, round(width * scale)), max(1, round(height * scale))), PILImage.BILINEAR)
    return np.asarray(picture)


class ModelStore:
    """Models loaded once and kept, by manifest path (used from the worker thread only).

    An in-memory model (a notebook's network, :mod:`viewer.inference.in_memory`) is kept under its
    placeholder path as it is, never resolved against the working folder (a notebook may change
    it), and never loaded from a file: there is none."""

    def __init__(self) -> None:
        self._models: dict[str, LoadedModel] = {}

    @staticmethod
    def _key(manifest: str | Path) -> str:
        return str(manifest) if is_in_memory(manifest) else str(Path(manifest).resolve())

    def put(self, model: LoadedModel) -> None:
        """Keep a model loaded elsewhere (the CLI's, on its own device; a network in memory)
        under its manifest."""
        self._models[self._key(model.manifest.path)] = model

    def get(self, manifest: str | Path) -> LoadedModel:
        key = self._key(manifest)
        if key not in self._models:
            if is_in_memory(manifest):
                raise LookupError(f"{manifest}: this viewer holds no such in-memory model")
            self._models[key] = LoadedModel.from_manifest(key, device="cpu")
        return self._models[key]


def method_support(model: LoadedModel) -> dict[str, str | None]:
    """Each method's reason it cannot explain ``model`` (None where it can)."""
    return {method_id: support_reason(cls, model) for method_id, cls in METHODS.items()}


def predict(job: JobLike, store: ModelStore, manifest: str | Path, image: Image) -> None:
    """Emits ``support`` (which methods apply to the network, see ``method_support``) and
    ``prediction`` (per-frame probabilities of every label); or, for a graph file that runs more
    than pure tensor operators and that the user has not trusted, ``untrusted`` (a TrustRequest)."""
    try:
        model = store.get(manifest)
    except UntrustedModelError as exc:
        job.emit("untrusted", exc.request)
        return
    job.emit("support", method_support(model))
    job.check()
    job.emit("prediction", model.predict(image))


def explain_frame(
    job: JobLike,
    store: ModelStore,
    manifest: str | Path,
    image: Image,
    frame: int,
    target: str,
    methods: Sequence[str],
    seed: int = 0,
    anytime: bool = True,
    regions: Mapping[str, np.ndarray] | None = None,
    boxes: Sequence[tuple[str, Sequence[float]]] | None = None,
) -> None:
    """Maps of ``methods`` for ``target`` on one frame; emits ``map`` ``(SaliencyMap, uint8 display
    indices)`` per finished method and, where ``anytime``, ``preview`` (the same) for each estimate
    so far of an anytime method (LIME, RISE), each to be replaced by the next and by its map.
    ``regions``: a segmenter's target regions chosen by the user (label -> native mask); ``boxes``
    a detector's target boxes, ``(label, [x0, y0, x1, y1])`` in native pixels (one map each)."""
    model = store.get(manifest)
    explain(
        model,
        image,
        list(methods),
        targets=[target],
        frames=[frame],
        regions=regions or None,
        boxes=boxes or None,
        seed=seed,
        on_result=lambda smap: job.emit("map", (smap, display_indices(smap))),
        on_progress=job.progress,
        cancel=job.cancel,
        on_preview=(lambda smap: _preview(job, smap)) if anytime else None,
    )


def explain_series(
    job: JobLike,
    store: ModelStore,
    manifest: str | Path,
    image: Image,
    methods: Sequence[str],
    targets: Sequence[str],
    seed: int = 0,
    show: bool = False,
    *,
    around: int = 0,
    known: dict[tuple[str, str], list[SaliencyMap]] | None = None,
    anytime: bool = True,
) -> None:
    """Maps of ``methods`` for ``targets`` over every frame, one scale per map; emits ``series``
    ``(image, Explanation)`` once all are done.

    To ``show`` them as they come, the work goes as ``series_run.plan`` says: the fast methods
    over every frame first, then each slow one, each a chunk at a time (the engine's own chunks,
    so every map equals the one a single call computes), the chunk of frame ``around`` first and
    then outwards. As each method finishes a chunk its map so far is emitted as ``map``, all its
    frames on one scale, and where ``anytime`` an anytime method's estimate so far as ``preview``
    (likewise joined to the frames done). Progress names the method and slices being computed. Maps
    ``known`` per (method, target) (the cache's) are kept: frames every one of a step's covers are
    not computed again. The ``series`` probabilities of frames no step computed are NaN.
    """
    model = store.get(manifest)

    def run(methods: Sequence[str], frames: list[int] | None, on_progress, **kwargs) -> Explanation:
        return explain(
            model,
            image,
            list(methods),
            targets=list(targets),
            frames=frames,
            seed=seed,
            on_progress=on_progress,
            cancel=job.cancel,
            **kwargs,
        )

    if not show or model.volume:  # a 3-D model explains the whole series in one input anyway
        shows = anytime and show
        result = run(methods, None, job.progress, on_preview=(lambda m: _preview(job, m)) if shows else None)
        if show:
            for smap in result.maps:
                job.emit("map", (smap, display_indices(smap)))
        job.emit("series", (image, result))
        return
    parts = {key: list(maps) for key, maps in (known or {}).items()}
    steps = plan(methods, targets, image.n_frames, around, parts)
    status = SeriesProgress(steps, image.n_frames)
    labels = model.manifest.labels
    probabilities = np.full((image.n_frames, len(labels)), np.nan, np.float32)
    merged: dict[tuple[str, str], SaliencyMap] = {}  # each (method, target)'s map so far, one scale

    def preview(smap: SaliencyMap) -> None:
        smap.progress += f" on slice {smap.frames[-1] + 1}"  # the slice being sampled
        _preview(job, on_one_scale([*parts.get((smap.method, smap.target), []), smap]))

    def finished(smap: SaliencyMap) -> None:  # as each method finishes: a step is one engine chunk
        key = (smap.method, smap.target)
        parts.setdefault(key, []).append(smap)
        merged[key] = on_one_scale(parts[key])
        job.emit("map", (merged[key], display_indices(merged[key])))

    for number, step in enumerate(steps):
        job.check()

        def progress(method: str, fraction: float, number=number) -> None:
            job.progress(*status.at(number, method, fraction))

        shown = preview if anytime else None
        result = run(step.methods, list(step.frames), progress, on_result=finished, on_preview=shown)
        probabilities[list(step.frames)] = result.probabilities
    wanted = [(m, t) for m in methods for t in targets]
    for key in wanted:  # all known already: shown as they are
        if key not in merged and parts.get(key):
            merged[key] = on_one_scale(parts[key])
            job.emit("map", (merged[key], display_indices(merged[key])))
    maps = [merged[key] for key in wanted if key in merged]
    every = tuple(range(image.n_frames))
    job.emit("series", (image, Explanation(labels, every, probabilities, tuple(targets), maps)))


def _preview(job: JobLike, smap: SaliencyMap) -> None:
    job.emit("preview", (smap, display_indices(smap)))


def warm_up() -> None:
    """Ready the process for a live window, on the GUI thread at start-up, before the window shows.

    Torch's kernels are touched once: their first use in a thread stalls the interpreter for a
    moment. And what start-up has built so far (torch, Qt, pyqtgraph: about 430,000 objects) is
    moved out of the cyclic garbage collector's reach: its first full collection otherwise walks
    them all at once, holding the GIL for about 0.4 s on whichever thread triggers it (measured:
    the worker building its first network froze the window for 376 ms).
    """
    with torch.inference_mode():
        torch.nn.functional.conv2d(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 3, 3)).sum().item()
    gc.freeze()  # no collection first: it would cost the same 0.4 s, for little start-up garbage


def score_maps(
    job: JobLike,
    store: ModelStore,
    manifest: str | Path,
    image: Image,
    frame: int,
    maps: Sequence,
    mask: np.ndarray | None,
    marker: np.ndarray | None,
    steps: int = 50,
    sanity: bool = False,
    seed: int = 0,
) -> None:
    """Scores of each map on one frame (emits ``score`` per map), then ``agreement`` between them."""
    from viewer.explain.comparison import agreement, score_map

    model = store.get(manifest)
    for i, smap in enumerate(maps):
        job.check()
        job.progress(smap.method, i / max(len(maps), 1))
        scores = score_map(
            model,
            image,
            smap,
            frame,
            mask=mask,
            marker=marker,
            steps=steps,
            sanity=sanity,
            seed=seed,
            cancel=job.cancel,
        )
        job.emit("score", scores)
    if len(maps) > 1:
        job.check()
        job.emit("agreement", agreement(list(maps), frame))
