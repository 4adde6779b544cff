"""Evaluate saliency methods on a data set with the radiologists' annotations (CheXlocalize's
protocol): for every image, every label annotated on it and every method, the map's Otsu
segmentation against the annotation (IoU, Dice), whether its maximum hits it, its energy inside
and AUPRC; then per label and method the means with percentile bootstrap 95 % intervals, and,
where two or more radiologists annotated the same images, their own agreement as a
"radiologists" row.

Writes OUT/per_image.csv (one row per image x label x method, appended image by image, so an
interrupted run resumes with --resume), OUT/summary.csv, OUT/problems.csv (images that could not
be evaluated and why) and OUT/report.html (self-contained: charts and tables)."""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import tempfile
from pathlib import Path

HELP = "evaluate saliency methods against annotations over a data set (mIoU, hit rate, 95 % CIs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", type=Path, metavar="INPUT", help="files, folders, ZIP or DICOMDIR"
    )
    parser.add_argument("--model", required=True, help="a bundled model's name or a manifest.toml")
    parser.add_argument(
        "--annotation",
        action="append",
        type=Path,
        required=True,
        help="annotation file or folder (repeatable)",
    )
    parser.add_argument(
        "--methods", default="gradcam,gradcam++,guided-backprop,guided-gradcam,deconvnet,lime"
    )
    parser.add_argument(
        "--split-thresholds",
        type=float,
        metavar="VAL_FRACTION",
        help="tune each label's threshold on this fraction of the images (best mIoU), report the rest at it",
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the methods and the bootstrap")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--resume", action="store_true", help="skip the images already in OUT/per_image.csv")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from viewer.cli.explain import _annotation_files, _Progress, _series_id, _unique_id
    from viewer.explain import METHODS
    from viewer.explain.evaluation import PER_IMAGE
    from viewer.inference.catalog import resolve_model
    from viewer.inference.checkpoint import CheckpointError
    from viewer.inference.manifest import ManifestError
    from viewer.inference.model import LoadedModel
    from viewer.io import discover
    from viewer.io.annotations import AnnotationError, load_annotation

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.split_thresholds is not None and not 0 < args.split_thresholds < 1:
        print("--split-thresholds takes the validation fraction, between 0 and 1", file=sys.stderr)
        return 2
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        print(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}", file=sys.stderr)
        return 2
    per_image = args.out / "per_image.csv"
    if per_image.exists() and not args.resume:
        print(f"{per_image} exists; add --resume to go on with it, or choose a new folder", file=sys.stderr)
        return 2
    try:
        model = LoadedModel.from_manifest(resolve_model(args.model))
    except (ManifestError, CheckpointError) as exc:
        print(f"cannot load the model: {exc}", file=sys.stderr)
        return 2
    problems: list[tuple[str, str]] = []
    annotations = []
    for path in _annotation_files(args.annotation):
        try:
            annotations.append(load_annotation(path))
        except AnnotationError as exc:
            problems.append((str(path), exc.reason))
    if not annotations:
        print("no readable annotation files", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rows = _read_rows(per_image) if args.resume else []
    done = {row["image"] for row in rows}
    found = discover(args.inputs)
    problems += [(p.path, p.reason) for p in found.problems]
    bar = _Progress(enabled=not args.quiet and sys.stderr.isatty())
    used: set[str] = set()
    with _appender(per_image, PER_IMAGE) as append:
        for n, series in enumerate(found.series, start=1):
            name = _unique_id(_series_id(series), used)
            if name in done:
                continue
            try:
                new = _evaluate_one(
                    model, series, name, annotations, methods, args.seed, bar, n, len(found.series)
                )
            except Exception as exc:  # one bad image never stops the run; it is listed with why
                problems.append(
                    (name, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                )
                continue
            bar.done()
            append(new)
            rows += [_typed(r) for r in new]
    return _finish(args, model, rows, problems)


def _evaluate_one(model, series, name, annotations, methods, seed, bar, n, total) -> list[dict]:
    from functools import partial

    from viewer.explain import explain, get_method
    from viewer.explain.evaluation import RADIOLOGISTS, map_scores, reader_agreement, truths
    from viewer.io.loader import load_series

    image = load_series(series)
    matcher = model.manifest.label_matcher()
    found = truths(image, [a for a in annotations if a.matches(image)], matcher)
    prediction = model.predict(image)
    probability = {
        label: float(prediction.probabilities[:, i].max()) for i, label in enumerate(prediction.labels)
    }
    rows: list[dict] = []
    if found:
        result = explain(
            model,
            image,
            [get_method(m) for m in methods],
            targets=list(found),
            seed=seed,
            on_progress=partial(bar.show_step, f"[{n}/{total}] {name}"),
        )
        for smap in result.maps:
            truth = found[smap.target]
            scores = map_scores(smap.array, truth)
            rows.append(_row(name, smap.target, smap.method, probability, truth.annotation_labels, **scores))
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
    return rows


def _row(image, label, method, probability, annotation_labels, **scores) -> dict:
    row = {"image": image, "label": label, "method": method, "probability": probability[label]}
    row |= {k: scores.get(k) for k in ("iou", "dice", "hit", "energy", "auprc", "iou_by_threshold")}
    row["annotation_label"] = "|".join(annotation_labels)
    row["false_positive"] = bool(scores.get("false_positive", False))
    return row


def _typed(row: dict) -> dict:
    out = dict(row)
    for key in ("probability", "iou", "dice", "hit", "energy", "auprc"):
        value = out.get(key)
        out[key] = None if value in (None, "") else float(value)
    out["false_positive"] = out.get("false_positive") in (True, "1", "True", "true")
    curve = out.get("iou_by_threshold")
    if isinstance(curve, str):
        out["iou_by_threshold"] = [float(v) for v in curve.split(";")] if curve else None
    return out


def _read_rows(path: Path) -> list[dict]:
    """The rows of a per_image.csv an earlier run wrote; a last line cut off by a crash is dropped."""
    if not path.exists():
        return []
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        _replace(path, text.encode())
    return [_typed(r) for r in csv.DictReader(io.StringIO(text))]


class _appender:
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
        self.writer.writerows([{k: _cell(v) for k, v in row.items()} for row in rows])
        self.file.flush()
        os.fsync(self.file.fileno())

    def __exit__(self, *exc) -> None:
        self.file.close()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        return ";".join(f"{v:.4f}" for v in value)
    return str(value)


def _replace(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (our own outputs, replaced on a resumed run)."""
    fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _finish(args, model, rows: list[dict], problems: list[tuple[str, str]]) -> int:
    from viewer.explain.evaluation import SUMMARY, summarise, validation_images

    validation = None
    if args.split_thresholds is not None:
        validation = validation_images((r["image"] for r in rows), args.split_thresholds, args.seed)
    summary = summarise(rows, n=args.bootstrap, seed=args.seed, validation=validation)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=SUMMARY, lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: _cell(v) for k, v in row.items()} for row in summary])
    _replace(args.out / "summary.csv", text.getvalue().encode())
    listed = io.StringIO()
    csv.writer(listed, lineterminator="\n").writerows([("source", "reason"), *problems])
    _replace(args.out / "problems.csv", listed.getvalue().encode())
    try:
        from viewer.cli.evaluation_report import render_report
    except ImportError as exc:
        print(f"no report.html: {exc}", file=sys.stderr)
    else:
        _replace(args.out / "report.html", render_report(model.manifest.name, summary, rows).encode())
    for row in summary:
        print(
            f"{row['label']:<16} {row['method']:<18} n={row['n']:<4} mIoU {row['miou']:.3f} "
            f"[{row['miou_low']:.3f}, {row['miou_high']:.3f}]  hit {row['hit_rate']:.3f} "
            f"[{row['hit_low']:.3f}, {row['hit_high']:.3f}]"
        )
    for source, reason in problems:
        print(f"problem: {source}: {reason}", file=sys.stderr)
    print(f"wrote {args.out / 'summary.csv'} and {args.out / 'report.html'}")
    return 0 if summary else 1
