"""Compute saliency maps for every image or series found in INPUT (files, folders, ZIP, DICOMDIR).

Writes, per image (per series for CT), into OUT/<id>/: <method>.npy (float32 on the native pixel
grid: rows x cols, or slices x rows x cols), <method>.png (the map over the windowed image; for a
series, the slice where the target is most probable), predictions.json; and OUT/metrics.csv with
one row per image and method. Localization columns are filled where an annotation matches the
image (--annotation: any annotation format the viewer reads, or a folder of them).

With --dicom, also per map and DICOM source: <method>.dcm, the values in the source's study (a
Parametric Map over a CT series, a fractional Segmentation over a radiograph), and
<method>_sc.dcm, the PNG as a Secondary Capture; --anonymize writes them de-identified."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import threading
import time
from pathlib import Path

from viewer.cli.arguments import add_images_model_methods, chosen_methods, load_model

HELP = "compute saliency maps and their metrics for images or series (batch, headless)"

COLUMNS = (
    "image",
    "method",
    "target",
    "seconds",
    "pointing_game",
    "iou_otsu",
    "energy_in_mask",
    "deletion_auc",
    "insertion_auc",
    "probability",
    "substrate_drop",
    "dice_otsu",
    "iou_top",
    "auprc",
    "pointing_game_marker",
    "sanity_spearman",
    "sanity_verdict",
    "annotation_label",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_images_model_methods(parser, all_methods=True)
    parser.add_argument(
        "--target", action="append", help="label to explain (repeatable); default: top prediction"
    )
    parser.add_argument(
        "--annotation", action="append", type=Path, default=[], help="annotation file or folder"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random methods (default 0)")
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder (must not hold results already)"
    )
    parser.add_argument(
        "--steps", type=int, default=50, help="deletion/insertion steps (default 50; 0 skips)"
    )
    parser.add_argument("--sanity", action="store_true", help="also run the model-randomisation sanity check")
    parser.add_argument(
        "--dicom",
        action="store_true",
        help="also write each map as DICOM for a PACS: <method>.dcm (Parametric Map, or fractional "
        "Segmentation for radiographs) and <method>_sc.dcm (Secondary Capture)",
    )
    parser.add_argument(
        "--anonymize",
        action="store_true",
        help="with --dicom: hide patient identifiers and the original UIDs in the DICOM results",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from viewer.explain import METHODS
    from viewer.explain.registry import unsupported_reason
    from viewer.io.annotations import AnnotationError, annotation_files, load_annotation
    from viewer.io.naming import series_name, unique_name
    from viewer.state.session import ViewerSession

    method_ids = chosen_methods(args.methods)
    if method_ids is None:
        return 2
    if args.anonymize and not args.dicom:
        print("--anonymize applies to --dicom results; add --dicom", file=sys.stderr)
        return 2
    if (args.out / "metrics.csv").exists():
        print(f"{args.out / 'metrics.csv'} exists; choose a new output folder", file=sys.stderr)
        return 2
    model = load_model(args.model)
    if model is None:
        return 2

    def reason_against(method_id: str) -> str | None:
        return unsupported_reason(
            METHODS[method_id], hooks=model.hooks, family=model.family, attention=model.attention
        )

    if args.methods == "all":  # every method this network supports; say which are left out
        for method_id in method_ids:
            if (reason := reason_against(method_id)) is not None:
                print(f"skipped {method_id}: {reason}", file=sys.stderr)
        method_ids = [m for m in method_ids if reason_against(m) is None]
    for method_id in method_ids:
        reason = reason_against(method_id)
        if reason:
            print(f"--methods: {reason}", file=sys.stderr)
            return 2
    for label in args.target or []:
        if label not in model.manifest.labels:
            labels = ", ".join(model.manifest.labels)
            print(f"--target {label!r} is not a label of {model.manifest.name}: {labels}", file=sys.stderr)
            return 2
    annotations = []
    for path in annotation_files(args.annotation):
        try:
            annotations.append(load_annotation(path))
        except AnnotationError as exc:
            print(f"skipped annotation {exc}", file=sys.stderr)

    session = ViewerSession.batch(model, seed=args.seed)
    session.problems_found.connect(
        lambda problems: [print(f"skipped {p.source}: {p.reason}", file=sys.stderr) for p in problems]
    )
    session.error.connect(lambda message: print(message, file=sys.stderr))
    bar = _Progress(enabled=not args.quiet and sys.stderr.isatty())
    head = [""]
    session.progress.connect(lambda lane, step, f: lane == "explain" and bar.show_step(head[0], step, f))
    explained: dict = {}
    session.series_explained.connect(lambda image, result: explained.update({id(image): result}))
    try:
        session.open_paths(args.inputs)  # finds the series, opens and predicts the first
        found = session.discovery
        if found is None or not found.series:
            return 1  # the session said why
        rows, used_ids, cautioned, used_annotations = [], set(), False, set()
        for index, series in enumerate(found.series):
            if index:  # open_paths opened (or tried) the first
                session.open_series(index)
            image = session.state.image
            if image is None or session.series_index != index or not session.state.target:
                continue  # it could not be opened or predicted: the session said why on stderr
            name = unique_name(series_name(series), used_ids)
            head[0] = f"[{index + 1}/{len(found.series)}] {name}"
            session.explain_series(method_ids, args.target)
            bar.done()
            if (result := explained.pop(id(image), None)) is None:
                continue  # the explanation failed: said on stderr
            out_dir = args.out / name
            out_dir.mkdir(parents=True, exist_ok=False)
            if session.caution and not cautioned:  # once per run; each predictions.json has it
                print(f"caution: {session.caution}", file=sys.stderr)
                cautioned = True
            rows += _write_study(args, model, session, image, result, out_dir, annotations, used_annotations)
    except KeyboardInterrupt:
        print("interrupted; no metrics.csv written", file=sys.stderr)
        return 130
    for annotation in annotations:
        if id(annotation) not in used_annotations:
            print(f"annotation {annotation.source} matches none of the images", file=sys.stderr)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _write_new(args.out / "metrics.csv", text.getvalue().encode())
    print(f"wrote {len(rows)} rows to {args.out / 'metrics.csv'}")
    return 0


def _write_study(
    args, model, session, image, result, out_dir: Path, annotations, used: set[int]
) -> list[dict]:
    """One study's files (predictions.json, each map's .npy, .png and DICOM); its metrics rows."""
    import numpy as np

    from viewer.explain.comparison import score_map

    name, matcher = out_dir.name, session.matcher
    predictions = _write_predictions(out_dir, model, result, session.caution)
    matching = [a for a in annotations if a.matches(image)]
    used.update(id(a) for a in matching)
    for annotation in matching:
        if reason := matcher.unmatched_reason(annotation.labels_on(image)):
            print(f"{name}: {Path(annotation.source).name} {reason}", file=sys.stderr)
    rows = []
    for smap in result.maps:
        best = int(np.argmax(result.probabilities[:, smap.target_index]))  # key slice of a series
        key, rgb = _write_map(out_dir, image, smap, best, several_targets=len(result.targets) > 1)
        if args.dicom:
            _write_dicom(out_dir, key, image, smap, rgb, best, model.manifest.name, args.anonymize)
        mask, marker = _annotation_masks(image, smap.target, matching, matcher)
        # Localization over every frame the map covers; deletion/insertion and sanity on the key slice.
        scores = score_map(
            model,
            image,
            smap,
            result.frames[best],
            mask=mask,
            marker=marker,
            steps=args.steps,
            sanity=args.sanity,
            seed=args.seed,
        )
        labels = [n for a in matching for n in matcher.matched(a.labels_on(image), smap.target)]
        row = {"image": name, "probability": f"{predictions[smap.target]:.4f}"} | scores.as_row()
        rows.append(row | {"annotation_label": "|".join(dict.fromkeys(labels))})
    top = max(predictions, key=predictions.get)
    print(f"{name}: {top} {predictions[top]:.3f}; {len(result.maps)} maps in {out_dir}")
    return rows


def _write_predictions(out_dir: Path, model, result, caution: str | None) -> dict[str, float]:
    """predictions.json: each label's probability (a series: its largest over slices, and per
    slice), and the model's caution about this image, if it has one."""
    probabilities = result.probabilities
    predictions = {label: float(probabilities[:, i].max()) for i, label in enumerate(result.labels)}
    record = {"model": model.manifest.name, "frames": len(result.frames), "probability": predictions}
    if caution:
        record["caution"] = caution
    if len(result.frames) > 1:
        record["per_frame"] = {
            label: [round(float(p), 6) for p in probabilities[:, i]] for i, label in enumerate(result.labels)
        }
    _write_new(out_dir / "predictions.json", json.dumps(record, indent=1).encode())
    return predictions


def _write_map(out_dir: Path, image, smap, best: int, *, several_targets: bool):
    """<method>.npy on the native grid, and <method>.png over the windowed image (key slice);
    returns the files' stem and the PNG's pixels."""
    import numpy as np

    from viewer.io.overlay import map_over_frame

    key = f"{smap.method}_{smap.target}" if several_targets else smap.method
    buffer = io.BytesIO()
    np.save(buffer, smap.array if image.n_frames > 1 else smap.array[0])
    _write_new(out_dir / f"{key}.npy", buffer.getvalue())
    rgb = map_over_frame(image, smap.frames[best], smap.array[best], smap.convention)
    _write_new(out_dir / f"{key}.png", _png(rgb))
    return key, rgb


def _write_dicom(
    out_dir: Path, key: str, image, smap, rgb, best: int, model_name: str, anonymize: bool
) -> None:
    """<key>.dcm (the values, in the object that fits the source) and <key>_sc.dcm (the PNG). A
    source that cannot take them (a PNG film) is named on stderr; the run goes on."""
    from viewer.explain.registry import title_of
    from viewer.io.dicom_export import write_saliency_map, write_secondary_capture

    title = title_of(smap.method)
    try:
        write_saliency_map(
            image,
            smap.array,
            frames=smap.frames,
            out=out_dir / f"{key}.dcm",
            method=title,
            target=smap.target,
            model_name=model_name,
            convention=smap.convention,
            anonymize=anonymize,
        )
        write_secondary_capture(
            image,
            rgb,
            frame=smap.frames[best],
            out=out_dir / f"{key}_sc.dcm",
            description=f"{title}: {smap.target} ({model_name})",
            anonymize=anonymize,
            burned_in_annotation=False,  # the overlay only, no text
        )
    except ValueError as exc:
        print(f"{out_dir.name}: no DICOM results for {title}: {exc}", file=sys.stderr)


def _annotation_masks(image, target: str, annotations, matcher) -> tuple:
    """The union of the matching annotations' masks of model label ``target`` over all frames (any
    annotation label standing for it), and the burned-in marker of the last annotation that knows
    one (None if none does)."""
    import numpy as np

    mask = np.zeros((image.n_frames, image.rows, image.columns), bool)
    marker = None
    for annotation in annotations:
        mask |= annotation.mask(image, target, matcher)
        marker = annotation.marker_mask(image) if annotation.marker is not None else marker
    return mask, marker


def _png(rgb) -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_new(path: Path, data: bytes) -> None:
    from viewer.io.atomic import write_bytes_new

    write_bytes_new(path, data)


class _Progress:
    """A one-line progress bar on the terminal (stderr), redrawn at most ten times a second."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.last = 0.0
        self.lock = threading.Lock()

    def show(self, text: str, fraction: float) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.1 and fraction < 1):
            return
        self.last = now
        filled = int(fraction * 30)
        with self.lock:
            sys.stderr.write(f"\r{text[:50]:<50} [{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%}")
            sys.stderr.flush()

    def show_step(self, head: str, step: str, fraction: float) -> None:
        self.show(f"{head} {step}", fraction)

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 90 + "\r")
