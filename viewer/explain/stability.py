"""Are the maps stable? The statistics of the stability protocol, on maps already computed.

Researchers report that Grad-CAM's and LIME's maps "didn't look very consistent" between trainings
and runs. Arun et al. 2021 (Radiology: AI) measured it: *repeatability* (two trainings of one
architecture) and *reproducibility* (architectures of similar performance) as the SSIM between the
two maps of the same image. Quantus' robustness family measures how much a map moves when the
input moves a little (max- and average sensitivity).

The protocol, one definition for every comparison the viewer makes:

- each map is reduced to one channel as ``|value|`` summed over its channels, then min-max
  scaled to [0, 1] (:func:`protocol_map`);
- SSIM is scikit-image's ``structural_similarity(a, b, data_range=1)`` with its default 7 x 7
  uniform window (:func:`viewer.explain.similarity.structural_similarity`), on the image's grid;
- Spearman's rank correlation is over all pixels;
- over a set of maps of one image and method, the per-pixel mean is the "agreement" map and the
  per-pixel (population) standard deviation the "disagreement" map (:func:`agreement`).

Sensitivity follows Quantus (Yeh et al. 2019; Quantus ``MaxSensitivity``/``AvgSensitivity`` with
their defaults): for N inputs ``x' = x + u``, ``u`` uniform in ``[-r, r]`` per input value, the
ratio ``||e(x) - e(x')||_F / ||e(x)||_F`` of the raw explanations; its maximum and its mean over
the N samples (:func:`sensitivity`). The local Lipschitz estimate follows Quantus'
``LocalLipschitzEstimate`` (:func:`local_lipschitz`). This module is numpy only: what computes
the maps lives in ``viewer.explain.stability_runs``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from viewer.explain.similarity import spearman, structural_similarity, unit_scaled


def protocol_map(values: np.ndarray, channel_axis: int | None = None) -> np.ndarray:
    """One map as the protocol compares it: ``|value|`` summed over ``channel_axis`` (none for a
    map that already has one channel), min-max scaled to [0, 1] (zeros if constant)."""
    magnitude = np.abs(np.asarray(values, np.float64))
    if channel_axis is not None:
        magnitude = magnitude.sum(axis=channel_axis)
    return unit_scaled(magnitude)


@dataclass(frozen=True)
class PairScore:
    """How alike two maps of one image and method are (see the module's protocol)."""

    a: str
    b: str
    ssim: float
    spearman: float


def compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """``(ssim, spearman)`` of two single-channel maps of one grid, by the protocol."""
    pa, pb = protocol_map(a), protocol_map(b)
    return structural_similarity(pa, pb, data_range=1.0), spearman(pa, pb)


def pair_scores(maps: Mapping[str, np.ndarray]) -> list[PairScore]:
    """Every unordered pair of ``maps`` (name -> 2-D map), in the mapping's order."""
    out = []
    for (name_a, a), (name_b, b) in itertools.combinations(maps.items(), 2):
        s, r = compare(a, b)
        out.append(PairScore(name_a, name_b, s, r))
    return out


def agreement(maps: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The per-pixel mean ("agreement") and standard deviation ("disagreement", ddof 0) of the
    protocol maps of one image and method: where the maps agree something is there, where the
    deviation is high the method's answer depends on the checkpoint, seed or input."""
    stack = np.stack([protocol_map(m) for m in maps])
    return stack.mean(axis=0).astype(np.float32), stack.std(axis=0).astype(np.float32)


@dataclass(frozen=True)
class Sensitivity:
    """Quantus' max- and average sensitivity of one explanation, and each sample's ratio."""

    max: float
    mean: float
    ratios: tuple[float, ...]


def uniform_noises(
    shape: tuple[int, ...], radius: float, samples: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """``samples`` draws of noise uniform in ``[-radius, radius]`` per value (Quantus'
    ``uniform_noise`` with ``lower_bound=radius`` and no upper bound)."""
    for _ in range(samples):
        yield rng.uniform(-radius, radius, size=shape)


def sensitivity(
    explain: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    noises: Iterable[np.ndarray],
    reference: np.ndarray | None = None,
) -> Sensitivity:
    """Max and mean over ``noises`` of ``||e(x) - e(x + u)||_F / ||e(x)||_F`` (Quantus' defaults:
    difference, Frobenius norms, the raw maps as ``explain`` returns them). ``reference`` is
    ``e(x)`` when the caller has it already. NaN where ``e(x)`` is all zeros (no scale to judge by)."""
    a = np.asarray(explain(x) if reference is None else reference, np.float64).ravel()
    norm = float(np.linalg.norm(a))
    ratios = []
    for u in noises:
        b = np.asarray(explain(x + u), np.float64).ravel()
        ratios.append(float(np.linalg.norm(a - b)) / norm if norm > 0 else float("nan"))
    if not ratios:
        raise ValueError("sensitivity needs at least one perturbed input")
    return Sensitivity(float(np.max(ratios)), float(np.mean(ratios)), tuple(ratios))


def gaussian_noises(
    shape: tuple[int, ...], std: float, samples: int, rng: np.random.Generator | np.random.RandomState
) -> Iterator[np.ndarray]:
    """``samples`` draws of zero-mean Gaussian noise of standard deviation ``std`` per value
    (Quantus' ``batch_gaussian_noise``, the perturbation of its ``LocalLipschitzEstimate``)."""
    for _ in range(samples):
        yield rng.normal(0.0, std, size=shape)


def max_scaled(values: np.ndarray) -> np.ndarray:
    """``values / max |values|`` (Quantus' ``normalise_by_max``; all zeros stay zeros)."""
    values = np.asarray(values, np.float64)
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    return values / peak if peak > 0 else values


@dataclass(frozen=True)
class Lipschitz:
    """Quantus' local Lipschitz estimate of one explanation, and each sample's ratio."""

    estimate: float
    ratios: tuple[float, ...]


def local_lipschitz(
    explain: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    noises: Iterable[np.ndarray],
    reference: np.ndarray | None = None,
    normalise: bool = True,
) -> Lipschitz:
    """Max over ``noises`` of ``||e(x) - e(x')||_2 / (||x - x'||_2 + 1e-10)``, ``x' = x + u``
    (Alvarez-Melis and Jaakkola 2018, as Quantus' ``LocalLipschitzEstimate`` computes it with its
    defaults: Euclidean distances of the flattened arrays, each map divided by its maximum
    magnitude first when ``normalise``). Unlike sensitivity this divides by how far the input
    moved, so it compares noise levels; normalising makes it compare methods whose maps differ
    in scale. ``reference`` is ``e(x)`` when the caller has it already."""
    x = np.asarray(x, np.float64)
    scale = max_scaled if normalise else (lambda v: np.asarray(v, np.float64))
    a = scale(explain(x) if reference is None else reference).ravel()
    ratios = []
    for u in noises:
        moved = x + u
        b = scale(explain(moved)).ravel()
        ratios.append(float(np.linalg.norm(a - b)) / (float(np.linalg.norm(x - moved)) + 1e-10))
    if not ratios:
        raise ValueError("the local Lipschitz estimate needs at least one perturbed input")
    return Lipschitz(float(np.max(ratios)), tuple(ratios))


def shifted(values: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``values`` (..., rows, cols) moved by ``dy`` rows and ``dx`` columns; what comes in at the
    edges repeats the edge (a film moved on the detector, not wrapped around)."""
    rows, cols = values.shape[-2:]
    pad = [(0, 0)] * (values.ndim - 2) + [(abs(dy), abs(dy)), (abs(dx), abs(dx))]
    padded = np.pad(values, pad, mode="edge")
    top, left = abs(dy) - dy, abs(dx) - dx
    return padded[..., top : top + rows, left : left + cols]


def overlap(values: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The part of a 2-D map that a shift by ``(dy, dx)`` and back leaves meaningful: the border
    the shift filled with repeated edges cut off."""
    rows, cols = values.shape[-2:]
    return values[..., abs(dy) : rows - abs(dy), abs(dx) : cols - abs(dx)]
