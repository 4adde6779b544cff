"""Evaluate saliency methods on a data set with the radiologists' annotations (CheXlocalize's
protocol): for every image, every label annotated on it and every method, the map's Otsu
segmentation against the annotation (IoU, Dice), whether its maximum hits it, its energy inside
and AUPRC; then per label and method the means with percentile bootstrap 95 % intervals, and,
where two or more radiologists annotated the same images, their own agreement as a
"radiologists" row.

Writes OUT/per_image.csv (one row per image x label x method, appended image by image, so an
interrupted run resumes with --resume), OUT/summary.csv, OUT/problems.csv (images that could not
be evaluated and why) and OUT/report.html (self-contained: charts and tables). With --stability,
also how alike each method's maps are across seeds or checkpoints (SSIM, Spearman): OUT/stability.csv
and OUT/stability_summary.csv."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from viewer.cli.arguments import (
    add_cluster_arguments,
    add_images_model_methods,
    chosen_methods,
    cluster_spec,
    input_paths,
    load_model,
)

HELP = "evaluate saliency methods against annotations over a data set (mIoU, hit rate, 95 % CIs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_images_model_methods(parser)
    parser.add_argument(
        "--annotation",
        action="append",
        type=Path,
        required=True,
        help="annotation file or folder (repeatable)",
    )
    parser.add_argument(
        "--split-thresholds",
        type=float,
        metavar="VAL_FRACTION",
        help="tune each label's threshold on this fraction of the images (best mIoU), report the rest at it",
    )
    parser.add_argument(
        "--stability",
        action="append",
        default=[],
        choices=["seeds", "checkpoints"],
        help="also how stable each method's maps are over the images: across seeds of the random "
        "methods, or across the checkpoints the manifest lists (repeatable; OUT/stability.csv)",
    )
    parser.add_argument(
        "--stability-seeds", type=int, default=3, metavar="N", help="seeds per random method (default 3)"
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the methods and the bootstrap")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--resume", action="store_true", help="skip the images already in OUT/per_image.csv")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from viewer.batch.evaluation_run import EvaluationRequest, run_evaluation
    from viewer.cli.progress import Progress

    if args.split_thresholds is not None and not 0 < args.split_thresholds < 1:
        print("--split-thresholds takes the validation fraction, between 0 and 1", file=sys.stderr)
        return 2
    methods = chosen_methods(args.methods)
    if methods is None:
        return 2
    if (args.out / "per_image.csv").exists() and not args.resume:
        print(
            f"{args.out / 'per_image.csv'} exists; add --resume to go on with it, or choose a new folder",
            file=sys.stderr,
        )
        return 2
    found = input_paths(args.inputs)
    if found is None:
        return 2
    inputs = found[0]
    model = load_model(args.model, args.device)
    if model is None:
        return 2
    request = EvaluationRequest(
        inputs, list(args.annotation), methods, args.out, args.bootstrap, args.seed,
        args.resume, args.split_thresholds,
        cluster_spec(args), tuple(dict.fromkeys(args.stability)), args.stability_seeds,
    )  # fmt: skip
    bar = Progress(enabled=not args.quiet and sys.stderr.isatty())
    where = {"head": ""}

    def on_image(n: int, total: int, name: str) -> None:
        bar.done()
        where["head"] = f"[{n}/{total}] {name}"
        bar.show(where["head"], (n - 1) / total)

    try:
        outcome = run_evaluation(
            model,
            request,
            on_image=on_image,
            on_progress=lambda step, f: bar.show_step(where["head"], step, f),
            on_cluster=lambda link, n: print(f"{n} Dask workers; dashboard {link}", file=sys.stderr),
            on_count=bar.count,
        )
    except (ValueError, RuntimeError, OSError) as exc:  # includes a scheduler that cannot be reached
        print(str(exc), file=sys.stderr)
        return 2
    bar.done()
    for row in outcome.summary:
        print(
            f"{row['label']:<16} {row['method']:<18} n={row['n']:<4} mIoU {row['miou']:.3f} "
            f"[{row['miou_low']:.3f}, {row['miou_high']:.3f}]  hit {row['hit_rate']:.3f} "
            f"[{row['hit_low']:.3f}, {row['hit_high']:.3f}]"
        )
    for row in outcome.detection:  # a detector: its boxes against the radiologists'
        print(
            f"{row['label']:<16} {'boxes':<18} n={row['radiologist_boxes']:<4} "
            f"precision {row['precision']:.3f} [{row['precision_low']:.3f}, {row['precision_high']:.3f}]  "
            f"recall {row['recall']:.3f} [{row['recall_low']:.3f}, {row['recall_high']:.3f}]  "
            f"AP {row['ap']:.3f} [{row['ap_low']:.3f}, {row['ap_high']:.3f}]"
        )
    if outcome.stability:
        from viewer.batch.evaluation_stability import summary_lines

        print("\n".join(summary_lines(outcome.stability)))
    for source, reason in outcome.problems:
        print(f"problem: {source}: {reason}", file=sys.stderr)
    if outcome.report_problem:
        print(f"no report.html: {outcome.report_problem}", file=sys.stderr)
    written = [args.out / "summary.csv"]
    if outcome.detection:
        written.append(args.out / "detection_summary.csv")
    if outcome.report:
        written.append(outcome.report)
    print(
        f"wrote {', '.join(map(str, written[:-1]))} and {written[-1]}"
        if len(written) > 1
        else f"wrote {written[0]}"
    )
    return 0 if outcome.summary or outcome.detection else 1
