"""The maps that stability compares, computed with the explanation engine: one film under several
checkpoints or architectures, under several seeds of a random method, and under small changes of
the input (uniform noise, a shift of a few pixels, another VOI window).

Every map goes through ``viewer.explain.engine.explain``, as the viewer and ``explain`` make them,
so the numbers describe the maps users see. The statistics are in ``viewer.explain.stability``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from viewer.explain.engine import explain
from viewer.explain.registry import METHODS, get_method
from viewer.explain.saliency_map import SaliencyMap
from viewer.explain.stability import (
    Sensitivity,
    compare,
    gaussian_noises,
    local_lipschitz,
    overlap,
    sensitivity,
    shifted,
    uniform_noises,
)
from viewer.inference.model import LoadedModel
from viewer.io.image import Image, Window
from viewer.io.raster_files import pipeline_scale
from viewer.io.voi import auto_window, default_voi


def seeded_methods() -> list[str]:
    """Ids of the methods whose maps depend on their seed (``Method.seeded``)."""
    return [m for m, cls in METHODS.items() if cls.seeded]


def compared_frame(image: Image) -> int:
    """The frame compared: a radiograph's only one, a series' middle slice."""
    return image.n_frames // 2


def one_map(
    model: LoadedModel, image: Image, method: str, target: str, frame: int, seed: int = 0
) -> SaliencyMap:
    """``method``'s map of ``target`` on one frame. A 3-D model is refused: its maps cover a whole
    series, and the protocol compares 2-D maps."""
    if model.volume:
        raise ValueError(f"{model.manifest.name} is a 3-D model; stability compares maps of 2-D models")
    return explain(model, image, [get_method(method)], targets=[target], frames=[frame], seed=seed).maps[0]


def top_label(model: LoadedModel, image: Image, frame: int) -> str:
    """The label ``model`` finds most likely on ``frame``: the target every model is asked about
    when none is given (the first model's, so that all explain the same label)."""
    return explain(model, image, [], frames=[frame]).targets[0]


@dataclass
class TimedMaps:
    """Maps by name (native grid, one frame) and the seconds their computation took."""

    maps: dict[str, np.ndarray]
    seeds: dict[str, int]
    seconds: float


def across_models(
    models: Mapping[str, LoadedModel], image: Image, method: str, target: str, frame: int, seed: int = 0
) -> TimedMaps:
    """One map per model (checkpoints of one architecture, or architectures with the same labels),
    on the image's own grid so that models of different input sizes compare."""
    start = time.perf_counter()
    maps = {name: one_map(m, image, method, target, frame, seed).frame(frame) for name, m in models.items()}
    return TimedMaps(maps, dict.fromkeys(maps, seed), time.perf_counter() - start)


def across_seeds(
    model: LoadedModel, image: Image, method: str, target: str, frame: int, seeds: Sequence[int]
) -> TimedMaps:
    """One map per seed of a random method, named by its seed."""
    start = time.perf_counter()
    maps = {f"seed {s}": one_map(model, image, method, target, frame, s).frame(frame) for s in seeds}
    return TimedMaps(maps, {f"seed {s}": s for s in seeds}, time.perf_counter() - start)


def raw_grid(m: SaliencyMap) -> np.ndarray:
    """A map's raw values on the model grid (the engine keeps them scaled by ``scale``)."""
    return m.grid[0].astype(np.float64) * m.scale


def input_explainer(model: LoadedModel, image: Image, method: str, target: str, frame: int, seed: int = 0):
    """``(x, explain_input)``: the network's input for ``frame`` (``(C, H, W)``, after the
    manifest's pipeline) and a function from another such input to the raw map on the model
    grid, the same method, target and seed. Each call explains a copy of ``image`` given that
    input (``LoadedModel.provide``), so the film's own input is never replaced."""
    x, transform = model.prepare(image, frame)

    def explain_input(values: np.ndarray) -> np.ndarray:
        stand_in = copy.copy(image)
        tensor = torch.as_tensor(np.asarray(values, np.float32).reshape(x.shape)).to(model.device)
        model.provide(stand_in, frame, tensor, transform)
        return raw_grid(one_map(model, stand_in, method, target, frame, seed))

    return x.detach().cpu().numpy().astype(np.float64), explain_input


@dataclass
class Perturbed:
    """One kind of small input change: what it was, the maps' likeness to the unchanged map
    (means over its samples), Quantus' sensitivities where measured, and its cost."""

    perturbation: str
    ssim: float
    spearman: float
    seconds: float
    samples: int = 1
    sensitivity: Sensitivity | None = None
    lipschitz: float | None = None  # Quantus' local Lipschitz estimate (Gaussian noise rows)


def noise_sensitivity(
    model: LoadedModel,
    image: Image,
    method: str,
    target: str,
    frame: int,
    *,
    radius: float,
    samples: int,
    seed: int = 0,
) -> Perturbed:
    """Max- and average sensitivity under uniform noise of ``radius`` on the network's input
    (Quantus' definitions), and the mean SSIM/Spearman of the noisy maps against the clean one."""
    start = time.perf_counter()
    x, explain_input = input_explainer(model, image, method, target, frame, seed)
    reference = explain_input(x)
    likeness: list[tuple[float, float]] = []

    def recorded(values: np.ndarray) -> np.ndarray:
        out = explain_input(values)
        likeness.append(compare(reference, out))
        return out

    noises = uniform_noises(x.shape, radius, samples, np.random.default_rng(seed))
    result = sensitivity(recorded, x, noises, reference=reference)
    s, r = np.mean(likeness, axis=0)
    return Perturbed(
        f"uniform noise r={radius:g}", float(s), float(r), time.perf_counter() - start, samples, result
    )


def lipschitz_estimate(
    model: LoadedModel,
    image: Image,
    method: str,
    target: str,
    frame: int,
    *,
    std: float,
    samples: int,
    seed: int = 0,
) -> Perturbed:
    """Quantus' local Lipschitz estimate under Gaussian noise of ``std`` on the network's input
    (its ``LocalLipschitzEstimate`` defaults: maps divided by their maximum magnitude, Euclidean
    distances), and the mean SSIM/Spearman of the noisy maps against the clean one."""
    start = time.perf_counter()
    x, explain_input = input_explainer(model, image, method, target, frame, seed)
    reference = explain_input(x)
    likeness: list[tuple[float, float]] = []

    def recorded(values: np.ndarray) -> np.ndarray:
        out = explain_input(values)
        likeness.append(compare(reference, out))
        return out

    noises = gaussian_noises(x.shape, std, samples, np.random.default_rng(seed))
    result = local_lipschitz(recorded, x, noises, reference=reference)
    s, r = np.mean(likeness, axis=0)
    return Perturbed(
        f"gaussian noise sd={std:g}", float(s), float(r), time.perf_counter() - start, samples,
        lipschitz=result.estimate,
    )  # fmt: skip


def shift_likeness(
    model: LoadedModel, image: Image, method: str, target: str, frame: int, dy: int, dx: int, seed: int = 0
) -> Perturbed:
    """The map of the input moved by ``(dy, dx)`` pixels of the model grid, moved back, against the
    unmoved map, both without the border the move filled."""
    start = time.perf_counter()
    x, explain_input = input_explainer(model, image, method, target, frame, seed)
    reference = explain_input(x)
    moved_back = shifted(explain_input(shifted(x, dy, dx)), -dy, -dx)
    s, r = compare(overlap(reference, dy, dx), overlap(moved_back, dy, dx))
    return Perturbed(f"shift {dy:+d},{dx:+d} px", s, r, time.perf_counter() - start)


def other_window(image: Image, frame: int, factor: float) -> Image | None:
    """``image`` under a window ``factor`` times as wide, same centre: the same film a radiologist
    would read with another VOI. None when the model's input does not go through the VOI (colour
    films and plain raster files go in as stored)."""
    if image.is_color or pipeline_scale(image) is not None:
        return None
    voi = default_voi(image)
    base = voi if isinstance(voi, Window) else auto_window(image.frame(frame))
    wider = Window(base.center, base.width * factor, base.function, f"x{factor:g}", "auto")
    return dataclasses.replace(image, default_window=wider, voi_luts=())


def window_likeness(
    model: LoadedModel, image: Image, method: str, target: str, frame: int, factor: float, seed: int = 0
) -> Perturbed | None:
    """The map under another VOI window against the map under the film's own; None where the
    model reads no VOI (``other_window``) or its manifest sets its own intensity windows."""
    windowed = other_window(image, frame, factor)
    if windowed is None or model.manifest.input.intensity != "voi":
        return None
    start = time.perf_counter()
    a = one_map(model, image, method, target, frame, seed).frame(frame)
    b = one_map(model, windowed, method, target, frame, seed).frame(frame)
    s, r = compare(a, b)
    return Perturbed(f"window width x{factor:g}", s, r, time.perf_counter() - start)
