"""A stability run (``saliency-viewer stability``), Qt-free: for every film, method and pair of
models (checkpoints of one architecture, or architectures with the same labels), seeds of the
random methods and small input changes, how alike the maps are (``viewer.explain.stability``).

Writes, in ``OUT``:

- ``stability.csv``, one row per image, method and pair, appended image by image and synced (a
  run that dies resumes with ``resume``). Columns: ``image, method, target, kind, model_a,
  model_b, seed_a, seed_b, perturbation, ssim, spearman, max_sensitivity, avg_sensitivity,
  lipschitz, samples, seconds``. ``kind`` says what was compared: ``models`` (two models' maps, same seed),
  ``seeds`` (one model, two seeds of a random method: ``seed_a``/``seed_b``), ``noise`` (one
  model, Quantus' sensitivities over ``samples`` noisy inputs; ssim/spearman their mean against
  the clean map), ``lipschitz`` (one model, Quantus' local Lipschitz estimate over ``samples``
  inputs with Gaussian noise; ssim/spearman likewise), ``shift`` and ``window`` (one model, the
  map of the moved film moved back, or of the film under another VOI, against the map of the
  film as it is). ``seconds`` is what the row's maps cost (for ``models`` and ``seeds``: all the
  maps of that set, on the first row).
- ``maps/<image>/<method>/<model>.npy`` (each model's map on the image's grid, float32),
  ``<model> seed <n>.npy`` for seeds, and ``agreement.npy`` / ``disagreement.npy``, the per-pixel
  mean and standard deviation of the protocol maps over the models.
- ``summary.csv``: per method, kind and perturbation, the mean of each measure with a percentile
  bootstrap 95 % interval over the rows (pairs of one image are not independent: read the
  intervals as a guide), and the mean seconds.
- ``problems.csv`` when a film or a method could not be compared, with why.

The unit of work is one film (a series: its middle slice). On a Dask cluster (``cluster``, the
``--workers`` / ``--scheduler`` of ``explain`` and ``evaluate``; ``viewer.batch.stability_cluster``)
the workers return each film's rows and maps and only this process writes them, film by film as
they finish, so ``resume`` works the same and a killed worker loses or doubles nothing.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from viewer.batch.cluster_spec import ClusterSpec
from viewer.batch.row_files import RowAppender, problems_text, read_raw_rows, rows_text, sort_rows
from viewer.explain.engine import UnsupportedMethod, support_reason
from viewer.explain.evaluation import bootstrap_mean
from viewer.explain.registry import get_method
from viewer.explain.stability import agreement, pair_scores
from viewer.explain.stability_runs import (
    across_models,
    across_seeds,
    compared_frame,
    lipschitz_estimate,
    noise_sensitivity,
    seeded_methods,
    shift_likeness,
    top_label,
    window_likeness,
)
from viewer.inference.model import LoadedModel
from viewer.io import discover
from viewer.io.atomic import replace_bytes
from viewer.io.errors import failure
from viewer.io.loader import load_series
from viewer.io.naming import series_name, unique_name
from viewer.io.safe_text import printable

COLUMNS = (
    "image", "method", "target", "kind", "model_a", "model_b", "seed_a", "seed_b", "perturbation",
    "ssim", "spearman", "max_sensitivity", "avg_sensitivity", "lipschitz", "samples", "seconds",
)  # fmt: skip
SUMMARY_COLUMNS = (
    "method", "kind", "perturbation", "n",
    "ssim", "ssim_low", "ssim_high", "spearman", "spearman_low", "spearman_high",
    "max_sensitivity", "max_sensitivity_low", "max_sensitivity_high", "avg_sensitivity",
    "lipschitz", "lipschitz_low", "lipschitz_high", "seconds",
)  # fmt: skip


@dataclass
class StabilityRequest:
    inputs: list[Path]
    models: dict[str, LoadedModel]  # name (as in the CSV) -> model, in the order given
    methods: list[str]
    out: Path
    target: str | None = None  # default: the first model's top label on each film
    seeds: int = 0  # seeds per random method (0 or 1: no seed rows)
    radius: float | None = None  # uniform noise on the network input (None: no noise rows)
    samples: int = 10
    lipschitz_std: float | None = None  # Gaussian noise for the local Lipschitz estimate (None: no rows)
    shifts: tuple[tuple[int, int], ...] = ()
    windows: tuple[float, ...] = ()  # window width factors
    seed: int = 0
    bootstrap: int = 1000
    resume: bool = False
    cluster: ClusterSpec | None = None  # run the films on Dask (viewer.batch.stability_cluster)


@dataclass
class ImageResult:
    """One film's comparisons: its rows, its maps by path under ``OUT`` (written by the process
    that commits the rows, the client on a cluster) and what could not be compared there."""

    rows: list[dict] = field(default_factory=list)
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class StabilityOutcome:
    images: int = 0  # compared by this run
    done_before: int = 0
    rows: int = 0
    summary: list[dict] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


def check_models(models: dict[str, LoadedModel]) -> None:
    """Models compared must answer the same question: the same labels (any order)."""
    first_name, first = next(iter(models.items()))
    for name, model in models.items():
        if set(model.manifest.labels) != set(first.manifest.labels):
            raise ValueError(
                f"{name} has labels {', '.join(model.manifest.labels)}, {first_name} has "
                f"{', '.join(first.manifest.labels)}: stability compares models with the same labels"
            )
        if model.volume:
            raise ValueError(f"{name} is a 3-D model; stability compares maps of 2-D models")


def run_stability(
    request: StabilityRequest,
    *,
    on_image: Callable[[int, int, str], None] = lambda n, total, name: None,
    on_cluster: Callable[[str, int], None] | None = None,
) -> StabilityOutcome:
    """Compare every film under ``request.inputs``, here or on ``request.cluster`` (then
    ``on_cluster(dashboard_link, workers)`` once connected, and ``on_image`` as films finish);
    raises ``ValueError`` when results are there without ``resume`` or the models do not share
    their labels, ``OSError`` for a scheduler that cannot be reached (before anything is written)."""
    out = request.out
    table = out / "stability.csv"
    if table.exists() and not request.resume:
        raise ValueError(f"{table} exists; add --resume to go on with it, or choose a new folder")
    check_models(request.models)
    outcome = StabilityOutcome()
    found = discover(request.inputs)
    outcome.problems += [(p.path, p.reason) for p in found.problems]
    used: set[str] = set()
    names = [unique_name(series_name(series), used) for series in found.series]
    done = {row["image"] for row in read_raw_rows(table)} if request.resume else set()
    pending = [(s, n) for s, n in zip(found.series, names, strict=True) if n not in done]
    outcome.done_before = len(names) - len(pending)
    if request.cluster is None:
        results = _in_process(request, pending, on_image)
    else:
        from viewer.batch.stability_cluster import films_on_cluster

        # Connects (or raises) before anything is written.
        results = films_on_cluster(image_result, request, pending, on_cluster)
    out.mkdir(parents=True, exist_ok=True)
    with RowAppender(table, COLUMNS) as append, closing(results):
        for k, (name, result, reason) in enumerate(results, 1):
            if request.cluster is not None:
                on_image(k, len(pending), name)
            if reason is not None:  # one bad film never stops the run: it is listed with why
                outcome.problems.append((name, reason))
                continue
            for path, values in result.maps.items():  # before the rows: a resumed run skips the film
                _save(out / path, values)
            append(result.rows)
            outcome.problems += result.problems
            outcome.images += 1
    if table.exists():  # in discovery order, however the films finished (a cluster)
        sort_rows(table, "image", {name: i for i, name in enumerate(names)})
    rows = list(read_raw_rows(table))
    outcome.rows = len(rows)
    outcome.summary = summarise(rows, n=request.bootstrap, seed=request.seed)
    replace_bytes(out / "summary.csv", rows_text(outcome.summary, SUMMARY_COLUMNS))
    if outcome.problems:
        replace_bytes(out / "problems.csv", problems_text(outcome.problems))
    return outcome


def _in_process(request: StabilityRequest, pending, on_image) -> Iterator[tuple[str, object, str | None]]:
    for k, (series, name) in enumerate(pending, 1):
        on_image(k, len(pending), name)
        try:
            yield name, image_result(request, request.models, series, name), None
        except Exception as exc:
            yield name, None, failure(exc)


def image_result(request: StabilityRequest, models: dict[str, LoadedModel], series, name: str) -> ImageResult:
    """Every comparison of one film under ``models`` (the request's, or a worker's copies)."""
    result = ImageResult()
    problems, maps = result.problems, result.maps
    image = load_series(series)
    frame = compared_frame(image)
    first = next(iter(models.values()))
    target = request.target or top_label(first, image, frame)
    rows: list[dict] = []
    seeded = set(seeded_methods())
    for method in request.methods:
        usable = {}
        for model_name, model in models.items():
            reason = support_reason(get_method(method), model)
            if reason is None:
                usable[model_name] = model
            else:
                problems.append((f"{name}: {method} on {model_name}", reason))
        if not usable:
            continue
        base = {"image": name, "method": method, "target": target}
        folder = f"maps/{name}/{_file_name(method)}"
        try:
            rows += _compare_models(usable, image, method, target, frame, request.seed, base, folder, maps)
            for model_name, model in usable.items():
                if method in seeded and request.seeds >= 2:
                    seeds = range(request.seed, request.seed + request.seeds)
                    timed = across_seeds(model, image, method, target, frame, seeds)
                    for s, m in timed.maps.items():
                        maps[f"{folder}/{_file_name(model_name)} {_file_name(s)}.npy"] = m
                    rows += pair_rows(base, "seeds", timed, {s: model_name for s in timed.maps})
                rows += _perturbations(request, model, model_name, image, method, target, frame, base)
        except UnsupportedMethod as exc:
            problems.append((f"{name}: {method}", str(exc)))
    result.rows = rows
    result.maps = {path: np.asarray(m, np.float32) for path, m in maps.items()}  # as saved; half the bytes
    return result


def _compare_models(models, image, method, target, frame, seed, base, folder, maps) -> list[dict]:
    timed = across_models(models, image, method, target, frame, seed)
    for model_name, m in timed.maps.items():
        maps[f"{folder}/{_file_name(model_name)}.npy"] = m
    if len(timed.maps) < 2:
        return []
    mean, deviation = agreement(timed.maps.values())
    maps[f"{folder}/agreement.npy"] = mean
    maps[f"{folder}/disagreement.npy"] = deviation
    return pair_rows(base, "models", timed, {n: n for n in timed.maps})


def pair_rows(base: dict, kind: str, timed, model_of: dict[str, str]) -> list[dict]:
    """``base`` plus one row per pair of ``timed``'s maps, ``model_of`` naming each map's model;
    the seconds of the whole set on the first row."""
    rows = []
    for i, pair in enumerate(pair_scores(timed.maps)):
        rows.append(
            base
            | {
                "kind": kind,
                "model_a": model_of[pair.a],
                "model_b": model_of[pair.b],
                "seed_a": timed.seeds[pair.a],
                "seed_b": timed.seeds[pair.b],
                "ssim": pair.ssim,
                "spearman": pair.spearman,
                "seconds": timed.seconds if i == 0 else None,
            }
        )
    return rows


def _perturbations(request, model, model_name, image, method, target, frame, base) -> list[dict]:
    """The rows of small input changes for one model: noise, shifts, other windows."""
    results = []
    if request.radius is not None:
        noise = noise_sensitivity(
            model, image, method, target, frame, radius=request.radius, samples=request.samples,
            seed=request.seed,
        )  # fmt: skip
        results.append(("noise", noise))
    if request.lipschitz_std is not None:
        lipschitz = lipschitz_estimate(
            model, image, method, target, frame, std=request.lipschitz_std, samples=request.samples,
            seed=request.seed,
        )  # fmt: skip
        results.append(("lipschitz", lipschitz))
    for dy, dx in request.shifts:
        results.append(("shift", shift_likeness(model, image, method, target, frame, dy, dx, request.seed)))
    for factor in request.windows:
        windowed = window_likeness(model, image, method, target, frame, factor, request.seed)
        if windowed is not None:
            results.append(("window", windowed))
    rows = []
    for kind, p in results:
        rows.append(
            base
            | {
                "kind": kind,
                "model_a": model_name,
                "model_b": model_name,
                "seed_a": request.seed,
                "seed_b": request.seed,
                "perturbation": p.perturbation,
                "ssim": p.ssim,
                "spearman": p.spearman,
                "max_sensitivity": p.sensitivity.max if p.sensitivity else None,
                "avg_sensitivity": p.sensitivity.mean if p.sensitivity else None,
                "lipschitz": p.lipschitz,
                "samples": p.samples,
                "seconds": p.seconds,
            }
        )
    return rows


def summarise(rows: list[dict], *, n: int = 1000, seed: int = 0) -> list[dict]:
    """Per method, kind and perturbation: means with percentile bootstrap 95 % intervals."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["kind"], row.get("perturbation") or ""), []).append(row)
    out = []
    for (method, kind, perturbation), group in groups.items():
        entry: dict = {"method": method, "kind": kind, "perturbation": perturbation, "n": len(group)}
        for measure in ("ssim", "spearman", "max_sensitivity", "lipschitz"):
            mean, low, high = bootstrap_mean(_numbers(group, measure), n=n, seed=seed)
            entry |= {measure: mean, f"{measure}_low": low, f"{measure}_high": high}
        entry["avg_sensitivity"] = _mean(_numbers(group, "avg_sensitivity"))
        entry["seconds"] = _mean(_numbers(group, "seconds"))
        out.append(entry)
    return out


def _numbers(rows: list[dict], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key) not in (None, "")]


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _file_name(text: str) -> str:
    """A model's, method's or seed's name as a file name (no separators, never hidden)."""
    return re.sub(r"[^A-Za-z0-9 ._()\[\]-]+", "_", printable(text)).strip().lstrip(".-") or "map"


def _save(path: Path, values: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(values, np.float32))
    replace_bytes(path, buffer.getvalue())
