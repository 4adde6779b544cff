"""A data-set evaluation run (``saliency-viewer evaluate`` and the GUI's **Tools > Evaluate
folder...**), Qt-free: images evaluated one by one and appended to ``per_image.csv`` (synced, so a
run that dies resumes without losing or repeating an image), then the summary, the problems and
the report written whole."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from viewer.batch.cluster import worker_annotations
from viewer.batch.cluster_spec import ClusterSpec
from viewer.batch.evaluation_gallery import Gallery
from viewer.batch.row_files import RowAppender, problems_text, read_raw_rows, rows_text, sort_rows
from viewer.explain.context import CancelFlag, Cancelled
from viewer.explain.detection_scores import DETECTION_SUMMARY, summarise_detections
from viewer.explain.evaluation import (
    PER_IMAGE,
    RADIOLOGISTS,
    SUMMARY,
    summarise,
    validation_images,
)
from viewer.explain.study_scores import evaluate_one
from viewer.inference.manifest import DetectionSpec
from viewer.inference.model import LoadedModel
from viewer.io import discover
from viewer.io.annotations import AnnotationError, annotation_files, load_annotation
from viewer.io.atomic import replace_bytes
from viewer.io.errors import failure
from viewer.io.naming import series_name, unique_name


@dataclass
class EvaluationRequest:
    inputs: list[Path]
    annotations: list[Path]
    methods: list[str]
    out: Path
    bootstrap: int = 1000
    seed: int = 0
    resume: bool = False
    split_thresholds: float | None = None
    cluster: ClusterSpec | None = None  # run the studies on Dask (viewer.batch.cluster)
    stability: tuple[str, ...] = ()  # "seeds", "checkpoints": viewer.batch.evaluation_stability
    stability_seeds: int = 3


@dataclass
class EvaluationOutcome:
    summary: list[dict] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    images: int = 0
    report: Path | None = None
    report_problem: str = ""
    stability: list[dict] = field(default_factory=list)  # per method and kind, when asked for
    detection: list[dict] = field(default_factory=list)  # a detector's boxes, per label and overall


def run_evaluation(
    model: LoadedModel,
    request: EvaluationRequest,
    *,
    on_image: Callable[[int, int, str], None] | None = None,
    on_progress: Callable[[str, float], None] | None = None,
    cancel: CancelFlag | None = None,
    on_cluster: Callable[[str, int], None] | None = None,
    on_count: Callable[[int, int, int], None] | None = None,
) -> EvaluationOutcome:
    """Evaluate every image of ``request.inputs`` (in this process, or on ``request.cluster``:
    ``on_cluster(dashboard_link, workers)`` once connected, then ``on_count(done, failed, of)`` as
    each study comes back, where there is no finer progress to show); raises ``ValueError``
    naming what is missing (no readable annotation, results there without ``resume``),
    ``Cancelled`` when cancelled
    (the images done so far stay in ``per_image.csv``)."""
    per_image = request.out / "per_image.csv"
    if per_image.exists() and not request.resume:
        raise ValueError(f"{per_image} exists; resume it, or choose a new folder")
    outcome = EvaluationOutcome()
    if request.stability:
        from viewer.batch.evaluation_stability import check_stability

        check_stability(model, request.stability, request.stability_seeds)
    annotations = []
    for path in annotation_files(request.annotations):
        try:
            annotations.append(load_annotation(path))
        except AnnotationError as exc:
            outcome.problems.append((str(path), exc.reason))
    if not annotations:
        raise ValueError("no readable annotation files")
    # Only image names and the gallery's few best and worst are kept over the run, never the rows:
    # 10^5 images x labels x methods would not fit; the summary streams them from the file.
    done: set[str] = set()
    gallery = Gallery(request.out / "thumbnails")
    for row in read_rows(per_image) if request.resume else ():
        done.add(row["image"])
        if _ranked(row):
            gallery.note(row["label"], row["method"], row["image"], row["iou"])
    found = discover(request.inputs)
    outcome.problems += [(p.path, p.reason) for p in found.problems]
    used: set[str] = set()
    names = [unique_name(series_name(series), used) for series in found.series]
    pending = [
        (n, series, name)
        for n, (series, name) in enumerate(zip(found.series, names, strict=True), 1)
        if name not in done
    ]
    if request.cluster is None:
        results = _in_process(model, pending, len(names), annotations, request, on_image, on_progress, cancel)
    else:
        from viewer.batch.cluster import run_on_cluster

        common = (tuple(str(a.source) for a in annotations), list(request.methods), request.seed)
        results = _from_cluster(
            run_on_cluster(
                request.cluster,
                str(model.manifest.path),
                evaluate_task,
                common,
                [(name, (series, name)) for _, series, name in pending],
                on_started=on_cluster,
            )
        )
    request.out.mkdir(parents=True, exist_ok=True)  # after connecting: a refused run leaves nothing
    evaluated = failed = 0
    with RowAppender(per_image, PER_IMAGE) as append, closing(results):  # closed: a cluster's client too
        for name, new, pictures, reason in results:
            if cancel is not None and cancel.is_set():  # on a cluster: the tasks in flight are dropped
                raise Cancelled
            if reason is not None:  # one bad image never stops the run; it is listed with why
                outcome.problems.append((name, reason))
                failed += 1
            else:
                append(new)
                for label, method, iou, draw in pictures:  # after the rows: a picture never outlives them
                    gallery.offer(label, method, name, iou, draw)
                evaluated += 1
                if new:  # an image with no row (nothing annotated or predicted) is in no summary
                    done.add(name)
            if request.cluster is not None and on_count is not None:
                on_count(evaluated, failed, len(pending))
    gallery.prune()
    # Intervals resample the images in discovery order, however the studies finished (a cluster).
    order = {name: i for i, name in enumerate(names)}
    sort_rows(per_image, "image", order)
    outcome.images = len(done)
    if request.stability:  # a second pass over the same studies
        from viewer.batch.evaluation_stability import run_stability_pass

        studies = list(zip(found.series, names, strict=True))
        outcome.stability = run_stability_pass(
            model, request, studies, outcome.problems, on_image=on_image, on_cluster=on_cluster, cancel=cancel
        )
    if model.manifest.task == "detection":
        spec = model.manifest.detection or DetectionSpec()
        outcome.detection = summarise_detections(
            read_rows(per_image),
            score_threshold=spec.score_threshold,
            iou_threshold=spec.iou_threshold,
            n=request.bootstrap,
            seed=request.seed,
        )
        replace_bytes(request.out / "detection_summary.csv", rows_text(outcome.detection, DETECTION_SUMMARY))
    write_outputs(model.manifest.name, request, per_image, done, outcome, gallery)
    return outcome


def _in_process(model, pending, total, annotations, request, on_image, on_progress, cancel):
    """The studies evaluated here one by one: ``(name, rows, pictures, failure reason)``."""
    for n, series, name in pending:
        if cancel is not None and cancel.is_set():
            raise Cancelled
        if on_image is not None:
            on_image(n, total, name)
        try:
            new, pictures = evaluate_one(
                model, series, name, annotations, request.methods, request.seed, on_progress, cancel
            )
        except Cancelled:
            raise
        except Exception as exc:
            yield name, None, None, failure(exc)
        else:
            yield name, new, pictures, None


def _from_cluster(results):
    """A cluster's results as the in-process ones: pictures drawn when asked for."""
    for name, value, reason in results:
        if reason is not None:
            yield name, None, None, reason
        else:
            rows, pictures = value
            yield name, rows, [(label, m, iou, partial(bytes, png)) for label, m, iou, png in pictures], None


def _ranked(row: dict) -> bool:
    """Whether a row ranks its image for the report's best and worst pictures."""
    return row["method"] != RADIOLOGISTS and not row["false_positive"] and row["iou"] is not None


def typed(row: dict) -> dict:
    out = dict(row)
    for key in ("probability", "iou", "dice", "hit", "energy", "auprc", "agreement"):
        value = out.get(key)
        out[key] = None if value in (None, "") else float(value)
    out["false_positive"] = out.get("false_positive") in (True, "1", "True", "true")
    frame, box = out.get("frame"), out.get("box")
    out["frame"] = None if frame in (None, "") else int(frame)
    if isinstance(box, str):
        out["box"] = [float(v) for v in box.split(";")] if box else None
    curve = out.get("iou_by_threshold")
    if isinstance(curve, str):
        out["iou_by_threshold"] = [float(v) for v in curve.split(";")] if curve else None
    return out


def read_rows(path: Path) -> Iterator[dict]:
    """The rows of a per_image.csv an earlier run wrote, one by one (a last line cut off by a crash
    dropped)."""
    return map(typed, read_raw_rows(path))


def write_outputs(
    model_name: str,
    request: EvaluationRequest,
    per_image: Path,
    images: set[str],
    outcome: EvaluationOutcome,
    gallery: Gallery | None = None,
) -> None:
    """``summary.csv`` (from the rows of ``per_image``, read once), ``problems.csv``, the report."""
    validation = None
    if request.split_thresholds is not None:
        validation = validation_images(images, request.split_thresholds, request.seed)
    rows = read_rows(per_image)
    outcome.summary = summarise(rows, n=request.bootstrap, seed=request.seed, validation=validation)
    replace_bytes(request.out / "summary.csv", rows_text(outcome.summary, SUMMARY))
    replace_bytes(request.out / "problems.csv", problems_text(outcome.problems))
    try:
        from viewer.batch.evaluation_report import render_report
    except ImportError as exc:
        outcome.report_problem = str(exc)
    else:
        outcome.report = request.out / "report.html"
        replace_bytes(
            outcome.report,
            render_report(
                model_name, outcome.summary, len(images), gallery, outcome.stability, outcome.detection
            ).encode(),
        )


__all__ = ["EvaluationOutcome", "EvaluationRequest", "run_evaluation"]


def evaluate_task(model, annotation_paths: tuple[str, ...], methods, seed: int, series, name: str):
    """On a cluster worker: one study's rows, and the pictures of its scored maps as PNG bytes."""
    rows, pictures = evaluate_one(model, series, name, worker_annotations(annotation_paths), methods, seed)
    return rows, [(label, method, iou, draw()) for label, method, iou, draw in pictures]
