"""Explain an opened image with a loaded model: every requested method, label and frame.

Work is shared wherever the maths allows (see ``ExplainContext``): one recorded forward pass per
batch of frames serves all CAM-family and gradient-family maps of all target labels, and the
perturbation methods run batched in ``inference_mode``. Finished maps stream out through
``on_result`` one method at a time, progress through ``on_progress(method, fraction)``, and a set
``cancel`` flag stops the work at the next batch (raising ``Cancelled``). Anytime methods (LIME,
RISE) also stream their estimate so far through ``on_preview``: maps marked by their ``progress``
text, over the frames computed so far, each replaced by the next and at last by the final map,
which is the same with or without previews.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from viewer.explain.box_targets import DetectionPass
from viewer.explain.context import CancelFlag, ExplainContext
from viewer.explain.registry import Method, get_method, unsupported_reason
from viewer.explain.saliency_map import SaliencyMap
from viewer.explain.targets import SegmentationPass
from viewer.inference.detection import Detections
from viewer.inference.model import LoadedModel, default_target_index
from viewer.inference.preprocess import GridTransform
from viewer.inference.volume import VolumeTransform
from viewer.io.image import Image


class UnsupportedMethod(ValueError):
    """A method the loaded network cannot support; the message says why and what can."""


@dataclass
class Explanation:
    """Everything one ``explain`` call produced."""

    labels: tuple[str, ...]
    frames: tuple[int, ...]
    probabilities: np.ndarray  # (frames, labels)
    targets: tuple[str, ...]
    maps: list[SaliencyMap] = field(default_factory=list)
    # A segmenter's own masks (frames, labels, rows, cols) bool on the native grid; None otherwise.
    masks: np.ndarray | None = None
    # A detector's boxes on the frame explained, on the native grid, every score it gave (the
    # maps explain those at least the manifest's score_threshold: ``SaliencyMap.box``); else None.
    detections: Detections | None = None

    def get(self, method: str, target: str | None = None) -> SaliencyMap:
        target = target or self.targets[0]
        for m in self.maps:
            if m.method == method and m.target == target:
                return m
        raise KeyError(f"no {method} map for {target}")


# Frames computed together (one batch of inputs through each method): bounds memory on long series.
FRAME_CHUNK = 16


def explain(
    model: LoadedModel,
    image: Image,
    methods: Sequence[str | Method],
    *,
    targets: Sequence[str] | None = None,
    frames: Sequence[int] | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    frame_chunk: int = FRAME_CHUNK,
    on_result: Callable[[SaliencyMap], None] | None = None,
    on_progress: Callable[[str, float], None] | None = None,
    cancel: CancelFlag | None = None,
    on_preview: Callable[[SaliencyMap], None] | None = None,
    regions: Mapping[str, np.ndarray] | None = None,
    boxes: Sequence[tuple[str, Sequence[float]]] | None = None,
) -> Explanation:
    """Maps of ``methods`` for ``targets`` (default: the top prediction) over ``frames`` (default:
    every frame; a GUI asks for the slice on screen).

    A segmenter's (``task = "segmentation"``) target is a region of a label: by default the
    model's own mask of it on each frame, or ``regions[label]``, a bool mask on the native grid
    (``(rows, cols)``, or one per frame of the image); see :mod:`viewer.explain.targets`.
    A detector's (``task = "detection"``) targets are its boxes on one frame, of the ``targets``
    labels (default: all) scored at least the manifest's threshold, or the ``boxes`` given as
    ``(label, [x0, y0, x1, y1])`` in native pixels (a box clicked: the detected box it matches; a
    box the detector missed is explained as given); see :mod:`viewer.explain.box_targets`."""
    with torch.inference_mode(False):  # gradients are needed even if the caller holds inference mode
        return _explain(
            model,
            image,
            methods,
            targets,
            frames,
            seed,
            batch_size,
            frame_chunk,
            on_result,
            on_progress,
            cancel,
            on_preview,
            regions,
            boxes,
        )


def support_reason(method: type[Method] | Method, model: LoadedModel) -> str | None:
    """Why ``method`` cannot explain ``model``'s network (None if it can)."""
    return unsupported_reason(
        method,
        hooks=model.hooks,
        family=model.family,
        attention=model.attention,
        volume=model.volume,
        detector=model.manifest.task == "detection",
    )


def _explain(
    model, image, methods, targets, frames, seed, batch_size, frame_chunk, on_result, on_progress, cancel,
    on_preview, regions, boxes,
):  # fmt: skip
    instances = [get_method(m) if isinstance(m, str) else m for m in methods]
    for method in instances:
        reason = support_reason(method, model)
        if reason is not None:
            raise UnsupportedMethod(reason)
    labels = model.manifest.labels
    if model.volume:
        # A 3-D model reads the whole series at once: every map covers every slice.
        frames = tuple(range(image.n_frames))
        volume, transform = model.prepare_volume(image)
        inputs = volume[None].to(model.device)
    else:
        frames = tuple(range(image.n_frames)) if frames is None else tuple(frames)
        prepared = [model.prepare(image, f) for f in frames]
        transform = prepared[0][1]
        inputs = torch.stack([x for x, _ in prepared]).to(model.device)
    input_grads = any(m.needs_input_grads for m in instances)
    segmentation = None
    if model.manifest.task == "segmentation":
        # A region is one frame's: each frame gets a context of its own, scoring its regions.
        segmentation = SegmentationPass.run(model, inputs, frames, transform, regions)
        frame_chunk = 1
    detection = None
    if model.manifest.task == "detection":
        # Boxes are one frame's: the frame asked for, or the one with the best box.
        detection = DetectionPass.run(model, inputs, frames, transform, targets, boxes)
        frames, inputs = (detection.frame,), inputs[detection.index : detection.index + 1]
    wrapped = segmentation or detection  # the network seen through its targets' scores

    chunks = [slice(i, i + frame_chunk) for i in range(0, len(inputs), frame_chunk)]
    raw: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(instances))}
    seconds = [0.0] * len(instances)
    probabilities: list[torch.Tensor] = []
    target_index: list[int] = []
    result = Explanation(labels, frames, np.zeros((0, len(labels))), ())
    method_targets: list[int] = []  # what methods see: labels, or a segmenter's regions 0..T-1
    region_pixels: dict[int, list[int]] = {}
    if segmentation is not None:
        target_index = _resolve_targets(targets or list(regions or ()), labels, segmentation.probabilities)
        result.targets = tuple(labels[t] for t in target_index)
        result.masks = segmentation.masks
        method_targets = list(range(len(target_index)))
    if detection is not None:
        target_index = detection.label_indices()
        result.targets = tuple(labels[t] for t in target_index)
        result.detections = detection.native
        result.probabilities = detection.probabilities
        method_targets = list(range(len(target_index)))
        if not target_index:
            chunks = []  # no box to explain: no maps

    for c, chunk in enumerate(chunks):
        options = {"seed": seed, "batch_size": batch_size, "input_grads": input_grads, "cancel": cancel}
        if detection is not None:
            ctx = detection.context(model, inputs[chunk], **options)
        elif segmentation is None:
            ctx = ExplainContext.for_model(model, inputs[chunk], **options)
        else:
            ctx, chosen = segmentation.context(model, inputs[chunk], c, target_index, **options)
            for region in chosen:
                region_pixels.setdefault(region.label, []).append(region.pixels)
        with ctx:
            start = time.perf_counter()
            if wrapped is None:
                logits = ctx.logits if instances else ctx.evaluate(ctx.inputs, logits=True)
                probabilities.append(ctx.probabilities(logits.float()).cpu())
            if c == 0 and wrapped is None:
                # Choosing the default target needs every frame's prediction: one more pass, only
                # when no target was asked for.
                all_p = (
                    None if targets else probabilities[0] if len(chunks) == 1 else _probabilities(inputs, ctx)
                )
                target_index = _resolve_targets(targets, labels, all_p)
                result.targets = tuple(labels[t] for t in target_index)
                method_targets = target_index
            first_pass = time.perf_counter() - start
            for i, method in enumerate(instances):
                if on_progress is not None:
                    ctx.progress = lambda f, m=method.id, c=c: on_progress(m, (c + f) / len(chunks))
                start = time.perf_counter()
                if on_preview is not None and method.anytime:
                    ctx.preview = _previewer(
                        on_preview, model, method, raw[i], chunk.start, result, target_index, transform,
                        lambda start=start, i=i: seconds[i] + time.perf_counter() - start,
                    )  # fmt: skip
                raw[i].append(method.compute(ctx, method_targets).float().cpu())
                ctx.preview = None
                seconds[i] += time.perf_counter() - start + (first_pass if i == 0 else 0.0)
                if c == len(chunks) - 1:
                    maps = _finish(
                        method, torch.cat(raw.pop(i), dim=1), result, target_index, transform, seconds[i]
                    )
                    for m in maps:
                        m.notes += _model_notes(model, method, transform)
                        if segmentation is not None:
                            m.notes.append(segmentation.note(m.target_index, region_pixels[m.target_index]))
                    if detection is not None:  # one map per chosen box, in order
                        for position, m in enumerate(maps):
                            m.box = detection.box_index(position)
                            m.notes.append(detection.note(position))
                    result.maps += maps
                    if on_result is not None:
                        for m in maps:
                            on_result(m)
    if segmentation is not None:
        result.probabilities = segmentation.probabilities.numpy()
    elif detection is None:
        result.probabilities = torch.cat(probabilities).numpy()
    if model.volume:  # one output for the series, every frame's row
        result.probabilities = np.repeat(result.probabilities, len(frames), axis=0)
    return result


def _previewer(
    on_preview: Callable[[SaliencyMap], None],
    model: LoadedModel,
    method: Method,
    earlier: list[torch.Tensor],
    offset: int,
    result: Explanation,
    targets: list[int],
    transform: GridTransform | VolumeTransform,
    elapsed: Callable[[], float],
) -> Callable[[torch.Tensor, list[str], str], None]:
    """What ``ctx.preview`` calls while ``method`` computes a chunk of frames starting at
    ``offset``: the chunks before it (``earlier``, raw) and its first inputs so far as maps, one per
    target, on one scale as the final maps will be."""

    def preview(partial: torch.Tensor, notes: list[str], short: str) -> None:
        raw = torch.cat([*earlier, partial.float().cpu()], dim=1)
        frames = result.frames if model.volume else result.frames[: offset + partial.shape[1]]
        maps = _finish(
            method, raw, result, targets, transform, elapsed(), frames=frames, notes=notes, progress=short
        )
        for m in maps:
            m.notes += _model_notes(model, method, transform)
            on_preview(m)

    return preview


def _model_notes(model: LoadedModel, method: Method, transform: GridTransform | VolumeTransform) -> list[str]:
    """What a map of this model says beyond the method itself: which output a gradient explains,
    how a transformer's tokens were read as a grid, how a series was read as a 3-D input."""
    notes = []
    if isinstance(transform, VolumeTransform):
        notes.append(f"3-D model: {transform.describe()}")
    if method.family in ("cam", "gradient", "relevance") and (note := model.head.map_note()):
        notes.append(note)
    if method.needs_layer and model.grid is not None and model.grid.layout != "nchw":
        notes.append(f"target layer {model.target_layer}: {model.grid.describe()}")
    return notes


def _probabilities(inputs: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
    return torch.cat([ctx.evaluate(inputs[a:b]).cpu() for a, b in ctx.batches(len(inputs))])


def _resolve_targets(targets: Sequence[str] | None, labels: tuple[str, ...], p: torch.Tensor) -> list[int]:
    if not targets:
        return [default_target_index(p)]
    unknown = [t for t in targets if t not in labels]
    if unknown:
        raise KeyError(f"unknown target label(s) {', '.join(unknown)}; the model has {', '.join(labels)}")
    return [labels.index(t) for t in targets]


def scale_to_convention(raw: torch.Tensor, convention: str) -> tuple[torch.Tensor, float]:
    """Raw maps (any shape) scaled over all their values: ``unit`` rectifies, ``absolute`` takes
    magnitudes, both then divide by the maximum; ``signed`` divides by the largest magnitude."""
    if convention == "unit":
        raw = raw.clamp(min=0)
    elif convention == "absolute":
        raw = raw.abs()
    top = float(raw.abs().max()) if raw.numel() else 0.0
    return (raw / top if top > 0 else raw), top


def _finish(
    method: Method,
    raw: torch.Tensor,
    result: Explanation,
    targets: list[int],
    transform: GridTransform | VolumeTransform,
    seconds: float,
    *,
    frames: tuple[int, ...] | None = None,
    notes: list[str] | None = None,
    progress: str = "",
) -> list[SaliencyMap]:
    """Raw ``(T, frames, h, w)`` -> one ``SaliencyMap`` per target, on the model and native grids.
    A 3-D model's raw ``(T, 1, d, h, w)`` becomes a map over every slice; its ``grid`` is the
    model-input volume ``(D, H, W)``. A preview gives its ``frames`` (default: the result's), its
    ``notes`` (default: the method's for a finished map) and its ``progress``."""
    frames = result.frames if frames is None else frames
    out = []
    volume = isinstance(transform, VolumeTransform)
    if volume:
        raw = raw[:, 0]  # the one input: its depth axis takes the frames' place
    for t, target in enumerate(targets):
        scaled, top = scale_to_convention(raw[t], method.convention)
        grid = scaled
        if tuple(scaled.shape[-len(transform.size) :]) != tuple(transform.size):
            # (frames, h, w) as a batch of 2-D maps; a volume's (d, h, w) as one 3-D map.
            batch = scaled[None, None] if volume else scaled[:, None]
            mode = "trilinear" if volume else "bilinear"
            grid = F.interpolate(batch, size=transform.size, mode=mode, align_corners=False)
            grid = grid[0, 0] if volume else grid[:, 0]
        native = transform.to_native(scaled)  # from the method's own grid: one interpolation only
        out.append(
            SaliencyMap(
                method=method.id,
                target=result.labels[target],
                target_index=target,
                frames=frames,
                array=native.numpy().astype(np.float32, copy=False),
                grid=grid.numpy().astype(np.float32, copy=False),
                convention=method.convention,
                scale=top,
                seconds=seconds / len(targets),
                class_sensitive=method.class_sensitive,
                params=dict(method.params),
                notes=([method.caveat] if method.caveat else [])
                + (method.map_notes(target) if notes is None else list(notes)),
                volume=volume,
                progress=progress,
            )
        )
    return out
