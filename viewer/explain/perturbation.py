"""The perturbation family: maps from the model's output on altered copies of the input.

Every method evaluates its copies in batches under ``torch.inference_mode`` (``ExplainContext.scores``)
and builds each batch on the fly, so memory stays flat however many samples are asked for. The
score is the model's own probability of the target (sigmoid for multi-label, softmax for
multi-class). "Removed" pixels take the value 0 in normalised units, i.e. the training mean,
unless a method says otherwise.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from typing import ClassVar, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from viewer.explain.context import ExplainContext
from viewer.explain.registry import Method, register

Estimate = TypeVar("Estimate", torch.Tensor, np.ndarray)


class _Perturbation(Method):
    family = "perturbation"
    cost = "sampled"
    convention = "unit"
    volumetric = True  # patches become blocks, superpixels supervoxels

    def compute(self, ctx: ExplainContext, targets: list[int]) -> torch.Tensor:
        maps: list[torch.Tensor] = []
        self._finished = maps  # the inputs done so far: a preview of the next shows them too
        n = len(ctx.inputs)
        for b in range(n):
            with ctx.part(b, n):
                maps.append(self.compute_one(ctx, ctx.inputs[b].detach(), targets))
        return torch.stack(maps, dim=1)

    def compute_one(self, ctx: ExplainContext, x: torch.Tensor, targets: list[int]) -> torch.Tensor:
        """Raw maps ``(T, *grid)`` for one input ``(C, *grid)``: ``(H, W)``, or ``(D, H, W)``."""
        raise NotImplementedError


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Window positions covering every pixel: a last window flush with the edge is added when the
    stride does not land there (Captum's grid leaves those pixels out)."""
    window = min(window, length)
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def checkpoints(ctx: ExplainContext, run: Callable[[int, int], None], n: int, every: int) -> Iterator[int]:
    """Runs ``run(start, stop)`` over ``n`` items in the context's batches, each batch split so that
    none runs past a multiple of ``every``; yields each multiple reached, and ``n``. A caller that
    stops iterating stops the forwards there, and where it stops never depends on the batch sizes
    (tuned on timing), so the same seed gives the same map."""
    done = 0
    for _, stop in ctx.batches(n):
        while done < stop:
            upto = min(stop, (done // every + 1) * every)
            run(done, upto)
            done = upto
            if done % every == 0 or done == n:
                yield done


class _Stopping(_Perturbation):
    """A sampled method that stops once its estimate has settled: ``converge`` on, checked every
    ``step`` draws from ``minimum`` on; the stability test must pass at two successive checks, so
    one lucky batch does not end the run. The draws are those of the full run, so stopping only
    truncates them and the map equals the full run's when no check passes.

    An anytime method: where the context takes previews (``ctx.preview``, the GUI), the estimate
    so far is shown after the first batches that take ``PREVIEW_FIRST_S`` (once the batch size is
    tuned: showing a map while batches are timed would skew the choice), then after the first
    batch or check ``PREVIEW_EVERY_S`` after the last (each costs about what a finished map does,
    tens of milliseconds). A preview only reads what the run computed anyway, out of the batches'
    timing; the batches, the draws and so the final map are the same with or without previews."""

    anytime = True
    count_key: ClassVar[str]  # the parameter giving the maximum number of draws
    minimum_key: ClassVar[str]
    unit: ClassVar[str]  # what is drawn, for the notes
    PREVIEW_FIRST_S: ClassVar[float] = 0.75
    PREVIEW_EVERY_S: ClassVar[float] = 3.0

    def __init__(self, **params):
        super().__init__(**params)
        self._used: dict[int, list[int]] = {}  # per target: the draws each input used
        self._finished: list[torch.Tensor] = []

    def until_settled(
        self, ctx: ExplainContext, run: Callable[[int, int], None], estimate: Callable[[int], Estimate],
        stable: Callable[[Estimate, Estimate], bool], targets: list[int],
        as_map: Callable[[Estimate], torch.Tensor] = lambda e: e,
    ) -> Estimate:  # fmt: skip
        """``run`` the draws, ``estimate`` after each ``step`` of them, until ``stable(previous,
        current)`` held twice in a row (or every draw is used): the last estimate. ``as_map``
        turns an estimate into raw maps ``(T, *grid)``, for previews."""
        n = self.params[self.count_key]
        converge = self.params["converge"]
        every = self.params["step"] if converge else n
        previous, streak, used = None, 0, n
        every_s = self.PREVIEW_EVERY_S
        shown = [time.perf_counter() - every_s + self.PREVIEW_FIRST_S]

        def show(current: Estimate, done: int) -> None:
            with ctx.untimed():
                partial = torch.stack([*self._finished, as_map(current).float()], dim=1)
                short = f"{done}/{n} {self.unit}" + (", settling" if streak else "")
                ctx.preview(partial, self.preview_notes(done, streak), short)
            shown[0] = time.perf_counter()

        def estimate_aside(done: int) -> Estimate:
            with ctx.untimed():
                return estimate(done)

        def due() -> bool:
            return ctx.preview is not None and not ctx.tuning and time.perf_counter() - shown[0] >= every_s

        def run_and_show(start: int, stop: int) -> None:
            run(start, stop)
            if stop % every and stop < n and due():  # a check shows its own estimate
                show(estimate_aside(stop), stop)

        for done in checkpoints(ctx, run_and_show, n, every):
            current = estimate(done)
            streak = streak + 1 if previous is not None and stable(previous, current) else 0
            previous, used = current, done
            if streak >= 2 and done >= self.params[self.minimum_key]:
                break
            if done < n and due():
                show(current, done)
        ctx.report(1.0)
        for target in targets:
            self._used.setdefault(target, []).append(used)
        return previous

    def preview_notes(self, done: int, streak: int) -> list[str]:
        """What a preview says of itself: how many draws so far and whether it is settling."""
        n, title, unit = self.params[self.count_key], self.title, self.unit
        if not self.params["converge"]:
            return [f"{title} so far: {done} of {n} {unit} (convergence stop off); refined as more arrive"]
        step, minimum = self.params["step"], self.params[self.minimum_key]
        if streak == 0:
            state = "not settled yet"
        elif streak == 1:
            state = f"steady over the last {step}; one more steady step of {step} ends it"
        else:
            state = f"steady; it ends once {minimum} are drawn"
        return [f"{title} so far: {done} of at most {n} {unit}, {state}; refined as more arrive"]

    def settled(self) -> str:
        """What stayed stable when a run stopped early, for the notes."""
        raise NotImplementedError

    def map_notes(self, target: int) -> list[str]:
        """How many draws the maps used: fewer than the maximum where the estimate settled."""
        used = self._used.pop(target, [])
        if not used:
            return []
        n, title = self.params[self.count_key], self.title
        low, high = min(used), max(used)
        counts = f"{low}" if low == high else f"{low}-{high} (mean {round(sum(used) / len(used))})"
        per = "" if len(used) == 1 else f" over {len(used)} inputs"
        if not self.params["converge"]:
            return [f"{title} used all {n} {self.unit}{per} (convergence stop off)"]
        if high < n:
            return [f"{title} stopped at {counts} of {n} {self.unit}{per} ({self.settled()})"]
        if low < n:
            return [
                f"{title} used {counts} of {n} {self.unit}{per} (settled on some inputs: {self.settled()})"
            ]
        if n <= self.params[self.minimum_key]:
            return [f"{title} used all {n} {self.unit}{per} (a stop needs more than {n})"]
        return [f"{title} used all {n} {self.unit}{per} (did not settle before the maximum)"]


@register
class Occlusion(_Perturbation):
    """f(x) - f(x with a square patch set to the baseline), averaged over the patches covering
    each pixel; negative effects (the patch raised the score) are clipped for display. On a
    volume the patches are cubes (each side at most the axis' length)."""

    id = "occlusion"
    seconds = 6.0
    quick: ClassVar[dict] = {"window": 32, "stride": 32}
    report: ClassVar[dict] = {}
    title = "Occlusion"
    reference = "Zeiler & Fergus, ECCV 2014 (as Captum's Occlusion)"

    @classmethod
    def defaults(cls) -> dict:
        return {"window": 32, "stride": 16}

    def compute_one(self, ctx, x, targets):
        grid = tuple(x.shape[1:])
        wins = [min(self.params["window"], n) for n in grid]
        starts = [window_starts(n, w, self.params["stride"]) for n, w in zip(grid, wins, strict=True)]
        patches = [
            tuple(slice(a, a + w) for a, w in zip(corner, wins, strict=True))
            for corner in itertools.product(*starts)
        ]

        def make_batch(start: int, stop: int) -> torch.Tensor:
            batch = x.expand(stop - start, *x.shape).clone()
            for i, patch in enumerate(patches[start:stop]):
                batch[(i, slice(None), *patch)] = 0.0
            return batch

        full = ctx.evaluate(x[None])[0, targets]
        drops = full[None] - ctx.scores(make_batch, len(patches))[:, targets]  # (P, T)
        total = torch.zeros((len(targets), *grid))
        count = torch.zeros(grid)
        for patch, drop in zip(patches, drops, strict=True):
            total[(slice(None), *patch)] += drop.view(-1, *[1] * len(grid))
            count[patch] += 1
        return total / count


def rise_masks(
    g: torch.Generator, n: int, s: int, p: float, grid: tuple[int, ...]
) -> Callable[[int, int], torch.Tensor]:
    """RISE's masks (eclique/RISE): ``n`` binary grids of ``s`` cells per axis, each cell on with
    probability ``p``, upsampled (bi- or trilinear) to ``s + 1`` cells' size and cropped at a random
    shift of under a cell, so the edges fall anywhere. Drawn at once from ``g`` (grids, then
    shifts); ``masks(start, stop)`` builds those masks ``(stop - start, 1, *grid)`` on demand,
    so memory stays flat. D-RISE draws its masks the same way."""
    grids = (torch.rand((n, 1, *[s] * len(grid)), generator=g) < p).float()
    cells = [math.ceil(length / s) for length in grid]
    shifts = torch.stack([torch.randint(0, cell, (n,), generator=g) for cell in cells], 1)

    def masks(start: int, stop: int) -> torch.Tensor:
        up = F.interpolate(
            grids[start:stop],
            size=tuple((s + 1) * cell for cell in cells),
            mode="trilinear" if len(grid) == 3 else "bilinear",
            align_corners=False,
        )
        return torch.stack(
            [
                m[
                    (
                        slice(None),
                        *(slice(a, a + length) for a, length in zip(shift.tolist(), grid, strict=True)),
                    )
                ]
                for m, shift in zip(up, shifts[start:stop], strict=True)
            ]
        )

    return masks


@register
class RISE(_Stopping):
    """Randomised input sampling: the score-weighted mean of N random smooth masks, divided by N*p.
    The map is offset to start at 0 (every pixel gets the mean score otherwise). With ``converge``
    the masks are drawn ``step`` at a time and the run stops once the running map moved less than
    ``tolerance`` of its maximum at two successive steps (from ``min_masks`` on); ``masks`` is the
    most it draws."""

    id = "rise"
    seeded = True
    seconds = 55.0
    quick: ClassVar[dict] = {"masks": 40}
    report: ClassVar[dict] = {"masks": 1000}
    title = "RISE"
    reference = "Petsiuk et al., BMVC 2018 (eclique/RISE masks); stopped when the mean map settles"
    count_key = "masks"
    minimum_key = "min_masks"
    unit = "masks"

    @classmethod
    def defaults(cls) -> dict:
        return {
            "masks": 2000, "cells": 8, "p": 0.5,
            "converge": True, "min_masks": 500, "step": 100, "tolerance": 0.05,
        }  # fmt: skip

    def settled(self) -> str:
        tolerance, step = self.params["tolerance"], self.params["step"]
        return f"mean map moved < {tolerance:.0%} of its maximum over 2 steps of {step}"

    def compute_one(self, ctx, x, targets):
        n, p = self.params["masks"], self.params["p"]
        grid = tuple(x.shape[1:])  # (H, W), or (D, H, W): masks of s cells along every axis
        masks = rise_masks(ctx.generator(salt=29), n, self.params["cells"], p, grid)
        total = torch.zeros((len(targets), *grid))
        axes = tuple(range(1, total.ndim))

        def run(start: int, stop: int) -> None:
            batch_masks = masks(start, stop)
            scores = ctx.evaluate(x[None] * batch_masks.to(x.dtype))[:, targets]
            total.add_(torch.einsum("nt,n...->t...", scores.cpu(), batch_masks[:, 0].float()))

        def estimate(done: int) -> torch.Tensor:
            saliency = total / (done * p)
            return saliency - saliency.amin(dim=axes, keepdim=True)

        def stable(before: torch.Tensor, now: torch.Tensor) -> bool:
            change = (now - before).abs().amax(dim=axes)
            return bool((change <= self.params["tolerance"] * now.abs().amax(dim=axes)).all())

        return self.until_settled(ctx, run, estimate, stable, targets)


def superpixels(x: torch.Tensor, count: int) -> np.ndarray:
    """SLIC superpixels (SimpleITK) of an input ``(C, H, W)``: int labels 0..n-1, about ``count``;
    of a volume ``(C, D, H, W)``, supervoxels.

    SLIC follows edges such as the heart border, diaphragm and ribs better than the quickshift
    default of ``lime_image`` does on grey-scale films, and SimpleITK is already a dependency.
    """
    import SimpleITK as sitk  # here: its 0.1-0.2 s of start-up only for the runs that use LIME

    grey = x.float().mean(dim=0).cpu().numpy()
    span = float(grey.max() - grey.min()) or 1.0
    grey = (grey - grey.min()) * (100.0 / span)
    shape = grey.shape
    grid = max(2, round((grey.size / max(1, count)) ** (1 / grey.ndim)))
    labels = sitk.GetArrayFromImage(
        sitk.SLIC(
            sitk.GetImageFromArray(grey.astype(np.float32)),
            superGridSize=[grid] * grey.ndim,
            spatialProximityWeight=8.0,
            maximumNumberOfIterations=10,
            enforceConnectivity=True,
            initializationPerturbation=True,
        )
    )
    _, dense = np.unique(labels, return_inverse=True)
    return dense.reshape(shape).astype(np.int64)


def lime_kernel_weights(samples: np.ndarray, kernel_width: float) -> np.ndarray:
    """``lime_image``: cosine distance of each sample to the all-on sample, exponential kernel."""
    on = samples.sum(axis=1)
    cosine = 1.0 - np.sqrt(on / samples.shape[1])  # z . 1 / (|z| |1|) for binary z
    return np.sqrt(np.exp(-(cosine**2) / kernel_width**2))


def weighted_ridge(x: np.ndarray, y: np.ndarray, weights: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Coefficients of scikit-learn's ``Ridge(alpha, fit_intercept=True)`` fitted with sample
    weights, for every column of ``y`` at once: ``(features, outputs)``."""
    w = weights / weights.sum()
    xc = x - w @ x
    yc = y - w @ y
    xw = xc * weights[:, None]
    gram = xc.T @ xw + alpha * np.eye(x.shape[1])
    return np.linalg.solve(gram, xw.T @ yc)


@register
class LIME(_Stopping):
    """LIME for images as ``lime_image``: superpixels switched off at random (to their mean), a
    kernel-weighted ridge regression of the target probability on which were on; the map paints
    each superpixel with its coefficient (positive evidence kept for display). With the same
    superpixels, seed and samples (``converge`` off), the coefficients equal ``lime_image``'s.

    With ``converge`` (S-LIME's argument, Zhou et al., KDD 2021: stop when more samples would not
    change the explanation) the ridge is refitted every ``step`` samples and the run stops once
    the same ``top_k`` superpixels ranked highest and no coefficient moved more than
    ``tolerance`` of the largest at two successive steps, from ``min_samples`` on; ``samples``
    is the most it draws. Every target must have settled."""

    id = "lime"
    seeded = True
    seconds = 60.0
    default = True
    quick: ClassVar[dict] = {"samples": 40, "superpixels": 20}
    report: ClassVar[dict] = {"samples": 500}
    title = "LIME"
    reference = "Ribeiro et al., KDD 2016 (lime_image); stopped as S-LIME argues (Zhou et al., KDD 2021)"
    count_key = "samples"
    minimum_key = "min_samples"
    unit = "samples"

    @classmethod
    def defaults(cls) -> dict:
        return {
            "samples": 1000, "superpixels": 100, "kernel_width": 0.25,
            "converge": True, "min_samples": 200, "step": 100, "tolerance": 0.05, "top_k": 10,
        }  # fmt: skip

    def settled(self) -> str:
        return (
            f"same top {self.params['top_k']} superpixels and coefficients within "
            f"{self.params['tolerance']:.0%} over 2 steps of {self.params['step']}"
        )

    def compute_one(self, ctx, x, targets):
        segments = superpixels(x, self.params["superpixels"])
        coefficients = self.coefficients(ctx, x, segments, targets)
        return torch.from_numpy(coefficients.T[:, segments]).float()

    def coefficients(
        self, ctx: ExplainContext, x: torch.Tensor, segments: np.ndarray, targets: list[int]
    ) -> np.ndarray:
        """Ridge coefficients ``(superpixels, targets)``."""
        n, d = self.params["samples"], int(segments.max()) + 1
        # The very draw lime_image makes from its RandomState (so a test can match it exactly);
        # a run that stops early uses its first rows.
        samples = np.random.RandomState(ctx.seed).randint(0, 2, n * d).reshape(n, d)
        samples[0, :] = 1
        seg = torch.from_numpy(segments).to(x.device)
        counts = torch.bincount(seg.flatten(), minlength=d).clamp(min=1)
        means = (
            torch.stack([torch.bincount(seg.flatten(), weights=c.flatten().double(), minlength=d) for c in x])
            / counts
        )  # (C, d): each superpixel's mean value, what "off" shows
        fill = means.to(x.dtype)[:, seg]  # (C, *grid)
        on = torch.from_numpy(samples).to(x.device, torch.bool)
        design = samples.astype(np.float64)
        weights = lime_kernel_weights(samples, self.params["kernel_width"])
        scores = np.zeros((n, len(targets)))
        top_k = min(self.params["top_k"], d)

        def run(start: int, stop: int) -> None:
            keep = on[start:stop][:, seg][:, None]  # (n, 1, *grid)
            batch = torch.where(keep, x[None], fill[None])
            scores[start:stop] = ctx.evaluate(batch)[:, targets].double().cpu().numpy()

        def estimate(done: int) -> np.ndarray:
            return weighted_ridge(design[:done], scores[:done], weights[:done])

        def top(c: np.ndarray) -> np.ndarray:
            # Which superpixels rank in the top k (the evidence the map shows), per target; as a
            # set, since near-equal coefficients keep swapping places for thousands of samples.
            return np.sort(np.argsort(-c, axis=0, kind="stable")[:top_k], axis=0)

        def stable(before: np.ndarray, now: np.ndarray) -> bool:
            change = np.abs(now - before).max(axis=0)
            return np.array_equal(top(before), top(now)) and bool(
                (change <= self.params["tolerance"] * np.abs(now).max(axis=0)).all()
            )

        def as_map(c: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(c.T[:, segments])

        return self.until_settled(ctx, run, estimate, stable, targets, as_map)
