"""A data-set evaluation run (``saliency-viewer evaluate`` and the GUI's **Tools > Evaluate
folder...**), Qt-free: images evaluated one by one and appended to ``per_image.csv`` (synced, so a
run that dies resumes without losing or repeating an image), then the summary, the problems and
the report written whole."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from viewer.explain import explain, get_method
from viewer.explain.context import CancelFlag, Cancelled
from viewer.explain.evaluation import (
    PER_IMAGE,
    RADIOLOGISTS,
    SUMMARY,
    map_scores,
    reader_agreement,
    summarise,
    truths,
    validation_images,
)
from viewer.inference.model import LoadedModel
from viewer.io import discover
from viewer.io.annotations import AnnotationError, annotation_files, load_annotation
from viewer.io.atomic import replace_bytes
from viewer.io.loader import load_series
from viewer.io.naming import series_name, unique_name
from viewer.state.evaluation_gallery import Gallery, picture


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


@dataclass
class EvaluationOutcome:
    summary: list[dict] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    images: int = 0
    report: Path | None = None
    report_problem: str = ""


def run_evaluation(
    model: LoadedModel,
    request: EvaluationRequest,
    *,
    on_image: Callable[[int, int, str], None] | None = None,
    on_progress: Callable[[str, float], None] | None = None,
    cancel: CancelFlag | None = None,
) -> EvaluationOutcome:
    """Evaluate every image of ``request.inputs``; raises ``ValueError`` naming what is missing
    (no readable annotation, results there without ``resume``), ``Cancelled`` when cancelled
    (the images done so far stay in ``per_image.csv``)."""
    per_image = request.out / "per_image.csv"
    if per_image.exists() and not request.resume:
        raise ValueError(f"{per_image} exists; resume it, or choose a new folder")
    outcome = EvaluationOutcome()
    annotations = []
    for path in annotation_files(request.annotations):
        try:
            annotations.append(load_annotation(path))
        except AnnotationError as exc:
            outcome.problems.append((str(path), exc.reason))
    if not annotations:
        raise ValueError("no readable annotation files")
    request.out.mkdir(parents=True, exist_ok=True)
    rows = read_rows(per_image) if request.resume else []
    done = {row["image"] for row in rows}
    found = discover(request.inputs)
    outcome.problems += [(p.path, p.reason) for p in found.problems]
    used: set[str] = set()
    gallery = Gallery(request.out / "thumbnails")
    for row in rows:
        if _ranked(row):
            gallery.note(row["label"], row["method"], row["image"], row["iou"])
    with RowAppender(per_image, PER_IMAGE) as append:
        for n, series in enumerate(found.series, start=1):
            name = unique_name(series_name(series), used)
            if name in done:
                continue
            if cancel is not None and cancel.is_set():
                raise Cancelled
            if on_image is not None:
                on_image(n, len(found.series), name)
            try:
                new, pictures = evaluate_one(
                    model, series, name, annotations, request.methods, request.seed, on_progress, cancel
                )
            except Cancelled:
                raise
            except Exception as exc:  # one bad image never stops the run; it is listed with why
                outcome.problems.append(
                    (name, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                )
                continue
            append(new)
            for label, method, iou, draw in pictures:  # after the rows: a picture never outlives them
                gallery.offer(label, method, name, iou, draw)
            rows += [typed(r) for r in new]
    gallery.prune()
    outcome.images = len({r["image"] for r in rows})
    write_outputs(model.manifest.name, request, rows, outcome, gallery)
    return outcome


def _ranked(row: dict) -> bool:
    """Whether a row ranks its image for the report's best and worst pictures."""
    return row["method"] != RADIOLOGISTS and not row["false_positive"] and row["iou"] is not None


def evaluate_one(
    model, series, name, annotations, methods, seed, on_progress=None, cancel=None
) -> tuple[list[dict], list[tuple]]:
    """The rows of one image: every annotated label x method, the radiologists' agreement, and
    the false-positive localizations; and per scored map ``(label, method, IoU, draw)``, where
    ``draw()`` makes its picture for the report."""
    image = load_series(series)
    matcher = model.manifest.label_matcher()
    found = truths(image, [a for a in annotations if a.matches(image)], matcher)
    prediction = model.predict(image)
    probability = {
        label: float(prediction.probabilities[:, i].max()) for i, label in enumerate(prediction.labels)
    }
    rows: list[dict] = []
    pictures: list[tuple] = []
    if found:
        result = explain(
            model,
            image,
            [get_method(m) for m in methods],
            targets=list(found),
            seed=seed,
            on_progress=on_progress,
            cancel=cancel,
        )
        for smap in result.maps:
            truth = found[smap.target]
            scores = map_scores(smap.array, truth)
            rows.append(_row(name, smap.target, smap.method, probability, truth.annotation_labels, **scores))
            if scores["iou"] is not None:
                draw = partial(picture, image, smap.array, truth.union, smap.convention)
                pictures.append((smap.target, smap.method, scores["iou"], draw))
    for label, truth in found.items():
        agreement = reader_agreement(truth)
        if agreement is not None:
            rows.append(
                _row(
                    name,
                    label,
                    RADIOLOGISTS,
                    probability,
                    truth.annotation_labels,
                    iou=agreement["iou"],
                    hit=agreement["hit"],
                )
            )
    for label in model.manifest.labels:
        if label not in found and probability[label] >= 0.5:  # predicted, not annotated
            rows += [_row(name, label, m, probability, (), false_positive=True) for m in methods]
    return rows, pictures


def _row(image, label, method, probability, annotation_labels, **scores) -> dict:
    row = {"image": image, "label": label, "method": method, "probability": probability[label]}
    row |= {k: scores.get(k) for k in ("iou", "dice", "hit", "energy", "auprc", "iou_by_threshold")}
    row["annotation_label"] = "|".join(annotation_labels)
    row["false_positive"] = bool(scores.get("false_positive", False))
    return row


def typed(row: dict) -> dict:
    out = dict(row)
    for key in ("probability", "iou", "dice", "hit", "energy", "auprc"):
        value = out.get(key)
        out[key] = None if value in (None, "") else float(value)
    out["false_positive"] = out.get("false_positive") in (True, "1", "True", "true")
    curve = out.get("iou_by_threshold")
    if isinstance(curve, str):
        out["iou_by_threshold"] = [float(v) for v in curve.split(";")] if curve else None
    return out


def read_rows(path: Path) -> list[dict]:
    """The rows of a per_image.csv an earlier run wrote; a last line cut off by a crash is dropped."""
    if not path.exists():
        return []
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        replace_bytes(path, text.encode())
    return [typed(r) for r in csv.DictReader(io.StringIO(text))]


class RowAppender:
    """Appends whole rows to a CSV and syncs them to disk after each image."""

    def __init__(self, path: Path, columns: tuple[str, ...]):
        self.path, self.columns = path, columns

    def __enter__(self):
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.file = self.path.open("a", newline="")
        self.writer = csv.DictWriter(
            self.file, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n"
        )
        if new:
            self.writer.writeheader()
        return self.append

    def append(self, rows: list[dict]) -> None:
        self.writer.writerows([{k: cell(v) for k, v in row.items()} for row in rows])
        self.file.flush()
        os.fsync(self.file.fileno())

    def __exit__(self, *exc) -> None:
        self.file.close()


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        return ";".join(f"{v:.4f}" for v in value)
    return str(value)


def write_outputs(
    model_name: str,
    request: EvaluationRequest,
    rows: list[dict],
    outcome: EvaluationOutcome,
    gallery: Gallery | None = None,
) -> None:
    validation = None
    if request.split_thresholds is not None:
        validation = validation_images((r["image"] for r in rows), request.split_thresholds, request.seed)
    outcome.summary = summarise(rows, n=request.bootstrap, seed=request.seed, validation=validation)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=SUMMARY, lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: cell(v) for k, v in row.items()} for row in outcome.summary])
    replace_bytes(request.out / "summary.csv", text.getvalue().encode())
    listed = io.StringIO()
    csv.writer(listed, lineterminator="\n").writerows([("source", "reason"), *outcome.problems])
    replace_bytes(request.out / "problems.csv", listed.getvalue().encode())
    try:
        from viewer.state.evaluation_report import render_report
    except ImportError as exc:
        outcome.report_problem = str(exc)
    else:
        outcome.report = request.out / "report.html"
        replace_bytes(outcome.report, render_report(model_name, outcome.summary, rows, gallery).encode())


__all__ = ["EvaluationOutcome", "EvaluationRequest", "run_evaluation"]
