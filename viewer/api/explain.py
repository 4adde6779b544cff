"""``viewer.explain``: every method of the viewer on a network where the user already has it.

The call goes through the same machinery as the ``explain`` command and the window: a
:class:`~viewer.inference.model.LoadedModel` (made from the in-memory network by
:mod:`viewer.inference.in_memory`, or from a manifest by the catalog), the explanation engine,
the viewer's scores and its file writers. A notebook therefore gets the same numbers as the CLI
on the same input, and anything the catalog learns to open (a new model format) works here too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch
from torch import nn

from viewer.api.explanation import Explanation
from viewer.api.sources import (
    ImageLike,
    InputError,
    NetworkLike,
    input_spec,
    is_array,
    model_from_file,
    network_input,
    open_image,
)
from viewer.explain import engine
from viewer.explain.comparison import score_map
from viewer.explain.registry import METHODS, fast_default_methods
from viewer.inference.in_memory import borrowed, first_in_channels, model_from_network
from viewer.inference.manifest import InputSpec, Task
from viewer.inference.model import LoadedModel
from viewer.io import Image
from viewer.io.annotations import AnnotationError, load_annotation

Target = str | int


def explain(
    network: NetworkLike,
    image: ImageLike | list[ImageLike],
    methods: Sequence[str] | str | None = None,
    *,
    target: Target | Sequence[Target] | None = None,
    layer: str | nn.Module | None = None,
    preprocess: dict | InputSpec | object | None = None,
    labels: Sequence[str] | None = None,
    annotation: np.ndarray | str | os.PathLike | None = None,
    task: Task | None = None,
    seed: int = 0,
) -> Explanation | list[Explanation]:
    """Saliency maps of ``image`` under ``network``.

    ``network``: a ``torch.nn.Module`` in memory, a bundled model's name, a manifest (or a folder
    holding one), or a model file with a manifest beside it. ``image``: a numpy array, a torch
    tensor, a PIL image, a path (DICOM, PNG, JPEG, TIFF, a series' folder), a pydicom ``Dataset``,
    or a list of them (then a list of :class:`Explanation`, one per image, in order).

    With a network in memory and no ``preprocess``, an array or tensor is the network's input
    itself, ``(C, H, W)`` or ``(1, C, H, W)``, and the maps come back on its ``H x W`` grid. Other
    images go through ``preprocess``: the manifest's ``[input]`` settings as a dict or a
    dataclass (default for an in-memory network: the image's own size, values as stored).

    ``methods``: method ids (default: the viewer's fast default set; see ``viewer.METHODS``).
    ``target``: a label or an output index (default: the most probable). ``layer``: the target
    layer's dotted name or the module (default: the last layer that keeps a spatial grid).
    ``labels`` and ``task`` name an in-memory network's outputs (default ``"0"``..``"K-1"``;
    softmax over several outputs, sigmoid for one). ``annotation``: a boolean mask on the image's
    grid or an annotation file, for the localization scores in :attr:`Explanation.metrics`.
    """
    if isinstance(image, list | tuple):
        kwargs = dict(target=target, layer=layer, preprocess=preprocess, labels=labels, task=task, seed=seed)
        annotations = annotation if isinstance(annotation, list | tuple) else [annotation] * len(image)
        if len(annotations) != len(image):
            raise InputError(f"{len(annotations)} annotations for {len(image)} images")
        return [
            explain(network, one, methods, annotation=a, **kwargs)  # type: ignore[arg-type]
            for one, a in zip(image, annotations, strict=True)
        ]
    chosen = _methods(methods)
    with ExitStack() as stack:
        if isinstance(network, nn.Module):
            stack.enter_context(borrowed(network))
            model, opened = _in_memory(network, image, preprocess, labels, task, layer)
        elif isinstance(network, str | os.PathLike):
            if labels is not None or task is not None or layer is not None:
                raise InputError("labels, task and layer belong to the manifest of a model file")
            model, opened = model_from_file(network, preprocess), open_image(image)
        else:
            raise InputError(
                f"network must be a torch.nn.Module, a bundled model's name or a manifest path, "
                f"not a {type(network).__name__}"
            )
        targets = _targets(target, model.manifest.labels)
        result = engine.explain(model, opened, chosen, targets=targets, seed=seed)
        mask = _annotation_mask(annotation, opened, model, result.targets[0])
        scores = [
            score_map(
                model,
                opened,
                smap,
                smap.frames[int(np.argmax(result.probabilities[:, smap.target_index]))],
                mask=mask,
                steps=0,
                seed=seed,
            )
            for smap in result.maps
        ]
    return Explanation(model.manifest.name, opened, result, scores, mask)


def _methods(methods: Sequence[str] | str | None) -> list[str]:
    chosen = (
        list(fast_default_methods())
        if methods is None
        else [methods]
        if isinstance(methods, str)
        else list(methods)
    )
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    return chosen


def _in_memory(network: nn.Module, image, preprocess, labels, task, layer) -> tuple[LoadedModel, Image]:
    """The model on ``network`` and the opened image; an array without ``preprocess`` is the input."""
    if preprocess is None and is_array(image):
        given = network_input(image)
        model = model_from_network(
            network, input_shape=tuple(given.tensor.shape), labels=labels, task=task, layer=layer
        )
        model.provide(given.image, 0, given.tensor.to(model.device), given.transform)
        return model, given.image
    opened = open_image(image)
    channels = first_in_channels(network) or (3 if opened.is_color else 1)
    table = preprocess
    if preprocess is None or (isinstance(preprocess, dict) and "size" not in preprocess):
        table = {"size": [opened.rows, opened.columns], **(preprocess or {})}
    spec = input_spec(table, channels)
    model = model_from_network(
        network, input_shape=(channels, *spec.size), labels=labels, task=task, layer=layer, spec=spec
    )
    return model, opened


def _targets(target, labels: tuple[str, ...]) -> list[str] | None:
    if target is None:
        return None
    wanted = [target] if isinstance(target, str | int) else list(target)
    out = []
    for t in wanted:
        if isinstance(t, int) and not isinstance(t, bool):
            if not -len(labels) <= t < len(labels):
                raise InputError(f"target {t} is not an output index: the network has {len(labels)} outputs")
            out.append(labels[t])
        elif str(t) in labels:
            out.append(str(t))
        else:
            raise InputError(f"unknown target {t!r}; the labels are {', '.join(labels)}")
    return out


def _annotation_mask(annotation, image: Image, model: LoadedModel, target: str) -> np.ndarray | None:
    """The explained target's annotation as ``(frames, H, W)`` bool on the image's grid: a mask
    given as an array, or an annotation file's regions of ``target`` (all its regions when none
    of its labels names one of the model's, as with a network whose labels are indices)."""
    if annotation is None:
        return None
    if is_array(annotation):
        mask = np.asarray(
            annotation.detach().cpu() if isinstance(annotation, torch.Tensor) else annotation
        ).astype(bool)
        mask = mask[None] if mask.ndim == 2 else mask
        if mask.shape != (image.n_frames, image.rows, image.columns):
            raise InputError(
                f"annotation of shape {mask.shape[1:]} does not fit the image's grid "
                f"{(image.rows, image.columns)}"
            )
        return mask
    try:
        loaded = load_annotation(Path(annotation))
        matcher = model.manifest.label_matcher()
        mask = loaded.mask(image, target, matcher)
        if not any(matcher.matched(loaded.labels, label) for label in model.manifest.labels):
            mask = loaded.mask(image)
    except AnnotationError as exc:
        raise InputError(str(exc)) from None
    return mask


__all__ = ["Target", "explain"]
