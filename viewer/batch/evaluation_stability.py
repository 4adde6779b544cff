"""``evaluate --stability seeds|checkpoints``: how stable each method's maps are over the data
set, beside how well they localise.

After the localisation pass, a second pass over the same studies (one study is the unit of work,
in this process or on the Dask cluster of the run) compares, per film and method:

- ``seeds``: the maps of the random methods (``Method.seeded``: SmoothGrad, GradientSHAP, RISE,
  LIME) under ``stability_seeds`` seeds, every pair;
- ``checkpoints``: the maps of every checkpoint of the model's manifest
  (``network.weights = ["seed1.safetensors", ...]``), every pair (repeatability, Arun et al. 2021).

The statistics and protocol are those of ``saliency-viewer stability`` (``viewer.explain.stability``:
SSIM and Spearman of the min-max scaled magnitudes), on the compared frame (a series' middle
slice) and the model's most likely label there. Rows go to ``stability.csv`` with the stability
command's columns (appended study by study, so ``--resume`` skips studies already there), their
means with bootstrap intervals per method and kind to ``stability_summary.csv`` and to the
report. Only rows, never the maps: a data set's worth of maps would not fit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import closing

from viewer.batch.row_files import RowAppender, read_raw_rows, rows_text, sort_rows
from viewer.batch.stability_run import COLUMNS, SUMMARY_COLUMNS, pair_rows, summarise
from viewer.explain.context import CancelFlag, Cancelled
from viewer.explain.engine import support_reason
from viewer.explain.registry import get_method
from viewer.explain.stability_runs import (
    across_models,
    across_seeds,
    compared_frame,
    seeded_methods,
    top_label,
)
from viewer.inference.model import LoadedModel
from viewer.io.atomic import replace_bytes
from viewer.io.errors import failure
from viewer.io.loader import load_series

KINDS = ("seeds", "checkpoints")


def check_stability(model: LoadedModel, kinds: Sequence[str], seeds: int) -> None:
    """Refuse, before anything runs, a stability request the model cannot answer."""
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"--stability takes {' or '.join(KINDS)}, not {kind!r}")
    if "checkpoints" in kinds and len(model.manifest.checkpoints) < 2:
        raise ValueError(
            f"{model.manifest.path} names one weights file: --stability checkpoints needs a manifest "
            'listing several, network.weights = ["seed1.safetensors", "seed2.safetensors", ...]'
        )
    if "seeds" in kinds and seeds < 2:
        raise ValueError("--stability seeds needs --stability-seeds of 2 or more")
    if model.volume:
        raise ValueError(f"{model.manifest.name} is a 3-D model; stability compares maps of 2-D models")


_checkpoint_models: dict[tuple[str, str], dict[str, LoadedModel]] = {}


def checkpoint_models(model: LoadedModel) -> dict[str, LoadedModel]:
    """Every checkpoint of ``model``'s manifest as a model, named by its file's stem; ``model``
    itself for the first. Loaded once per process (a cluster worker keeps them)."""
    key = (str(model.manifest.path), str(model.device))
    if key not in _checkpoint_models:
        _checkpoint_models.clear()  # one run's model at a time
        first, *others = model.manifest.checkpoints
        models = {first.stem: model}
        for weights in others:
            models[weights.stem] = LoadedModel(model.manifest.checkpoint(weights), model.device)
        _checkpoint_models[key] = models
    return _checkpoint_models[key]


def study_stability(
    model: LoadedModel, series, name: str, methods: Sequence[str], kinds: Sequence[str], seeds: int, seed: int
) -> list[dict]:
    """One study's rows: per method, every pair of seeds and of checkpoints asked for. A method
    the network cannot run is left out (the localisation pass reports it)."""
    image = load_series(series)
    frame = compared_frame(image)
    target = top_label(model, image, frame)
    seeded = set(seeded_methods())
    checkpoints = checkpoint_models(model) if "checkpoints" in kinds else {}
    rows: list[dict] = []
    for method in methods:
        if support_reason(get_method(method), model) is not None:
            continue
        base = {"image": name, "method": method, "target": target}
        if "seeds" in kinds and method in seeded:
            timed = across_seeds(model, image, method, target, frame, range(seed, seed + seeds))
            rows += pair_rows(base, "seeds", timed, dict.fromkeys(timed.maps, model.manifest.name))
        if checkpoints:
            timed = across_models(checkpoints, image, method, target, frame, seed)
            rows += pair_rows(base, "checkpoints", timed, {n: n for n in timed.maps})
    return rows


def stability_task(model, methods, kinds, seeds: int, seed: int, series, name: str) -> list[dict]:
    """On a cluster worker: one study's stability rows."""
    return study_stability(model, series, name, methods, kinds, seeds, seed)


def run_stability_pass(
    model: LoadedModel,
    request,
    studies: Sequence[tuple[object, str]],
    problems: list[tuple[str, str]],
    *,
    on_image: Callable[[int, int, str], None] | None = None,
    on_cluster: Callable[[str, int], None] | None = None,
    cancel: CancelFlag | None = None,
) -> list[dict]:
    """Compare the maps of every ``(series, name)`` of ``studies`` not yet in ``stability.csv``
    (the request's ``stability``, ``stability_seeds``, methods, seed, cluster), append the rows,
    write ``stability_summary.csv`` and return the summary. A study that fails is added to
    ``problems`` and the run goes on."""
    table = request.out / "stability.csv"
    done = {row["image"] for row in read_raw_rows(table)} if request.resume else set()
    pending = [(series, name) for series, name in studies if name not in done]
    kinds, methods = tuple(request.stability), list(request.methods)
    args = (methods, kinds, request.stability_seeds, request.seed)
    if request.cluster is None:
        results = _in_process(model, pending, args, on_image, cancel)
    else:
        from viewer.batch.cluster import run_on_cluster

        results = run_on_cluster(
            request.cluster, str(model.manifest.path), stability_task, args,
            [(name, (series, name)) for series, name in pending], on_started=on_cluster,
        )  # fmt: skip
    with RowAppender(table, COLUMNS) as append, closing(results):
        for name, rows, reason in results:
            if cancel is not None and cancel.is_set():
                raise Cancelled
            if reason is not None:
                problems.append((f"{name} (stability)", reason))
            else:
                append(rows)
    sort_rows(table, "image", {name: i for i, (_, name) in enumerate(studies)})
    summary = summarise(list(read_raw_rows(table)), n=request.bootstrap, seed=request.seed)
    replace_bytes(request.out / "stability_summary.csv", rows_text(summary, SUMMARY_COLUMNS))
    return summary


def _in_process(model, pending, args, on_image, cancel) -> Iterator[tuple[str, list | None, str | None]]:
    for n, (series, name) in enumerate(pending, 1):
        if cancel is not None and cancel.is_set():
            raise Cancelled
        if on_image is not None:
            on_image(n, len(pending), f"{name} (stability)")
        try:
            rows = study_stability(model, series, name, *args)
        except Exception as exc:  # one bad film never stops the run: it is listed with why
            yield name, None, failure(exc)
        else:
            yield name, rows, None


def summary_lines(summary: list[dict]) -> list[str]:
    """One line per method and kind, for the terminal and the report."""
    lines = []
    for row in summary:
        lines.append(
            f"{row['method']} across {row['kind']}: n={row['n']} pairs, SSIM {row['ssim']:.3f} "
            f"[{row['ssim_low']:.3f}, {row['ssim_high']:.3f}], Spearman {row['spearman']:.3f} "
            f"[{row['spearman_low']:.3f}, {row['spearman_high']:.3f}]"
        )
    return lines


__all__ = ["KINDS", "check_stability", "run_stability_pass", "summary_lines"]
