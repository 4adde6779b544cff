"""Are the maps stable? For every film and method, how alike the maps are across checkpoints of
one architecture (repeatability) or architectures with the same labels (reproducibility), across
seeds of the random methods, and under small input changes (uniform noise: Quantus' max- and
average sensitivity; Gaussian noise: its local Lipschitz estimate; a shift of a few pixels;
another VOI window).

Protocol: each map |value| summed over channels, min-max scaled to [0, 1]; SSIM as scikit-image's
structural_similarity(a, b, data_range=1) (7 x 7 uniform window) on the image's grid; Spearman
over all pixels. A manifest with network.weights = ["fold1.safetensors", ...] counts as one model
per checkpoint.

Writes OUT/stability.csv (one row per image, method and pair; column kind says which comparison),
OUT/maps/<image>/<method>/*.npy (each model's map, agreement.npy and disagreement.npy),
OUT/summary.csv (means with bootstrap 95 % intervals per method) and OUT/problems.csv.

With --workers N or --scheduler ADDRESS the films run on Dask, one film per task, as for explain
and evaluate; rows are still appended film by film here, so --resume works the same."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from viewer.cli.arguments import (
    add_cluster_arguments,
    add_trust_code,
    chosen_methods,
    cluster_spec,
    input_paths,
)

HELP = "how stable the maps are across checkpoints, architectures, seeds and small input changes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders, ZIP or DICOMDIR")
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        help="a bundled model's name or a manifest.toml (repeat for each model compared; a manifest "
        "listing several weights files counts once per file)",
    )
    parser.add_argument(
        "--methods", default=None, help="comma-separated method ids (default set if not given)"
    )
    parser.add_argument("--target", help="label explained (default: the first model's top label per film)")
    parser.add_argument(
        "--seeds", type=int, default=0, metavar="N", help="N seeds of each random method (SmoothGrad, ...)"
    )
    parser.add_argument(
        "--noise-radius",
        type=float,
        metavar="R",
        help="uniform noise in [-R, R] on the network input: Quantus' max- and average sensitivity",
    )
    parser.add_argument(
        "--lipschitz-std",
        type=float,
        metavar="SD",
        help="Gaussian noise of standard deviation SD on the network input: Quantus' local Lipschitz "
        "estimate (over --samples inputs)",
    )
    parser.add_argument("--samples", type=int, default=10, help="noisy inputs per film (default 10)")
    parser.add_argument(
        "--shift",
        action="append",
        default=[],
        metavar="DY,DX",
        help="move the input by DY rows and DX columns of the model grid (repeatable)",
    )
    parser.add_argument(
        "--window",
        action="append",
        default=[],
        type=float,
        metavar="FACTOR",
        help="the same film under a window FACTOR times as wide (repeatable; e.g. 0.8, 1.25)",
    )
    parser.add_argument("--seed", type=int, default=0, help="first seed of the methods; the bootstrap's")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--resume", action="store_true", help="skip the films already in OUT/stability.csv")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    add_cluster_arguments(parser)
    add_trust_code(parser)


def run(args: argparse.Namespace) -> int:
    from viewer.batch.stability_run import StabilityRequest, run_stability

    methods = chosen_methods(args.methods)
    shifts = _shifts(args.shift)
    if methods is None or shifts is None:
        return 2
    noise = [v for v in (args.noise_radius, args.lipschitz_std) if v is not None]
    if args.samples < 1 or args.seeds < 0 or any(v <= 0 for v in noise):
        print(
            "--samples must be at least 1, --seeds not negative, --noise-radius and --lipschitz-std above 0",
            file=sys.stderr,
        )
        return 2
    found = input_paths(args.inputs)
    if found is None:
        return 2
    models = load_models(args.model, args.device)
    if models is None:
        return 2
    request = StabilityRequest(
        found[0], models, methods, args.out, args.target, args.seeds, args.noise_radius, args.samples,
        args.lipschitz_std, shifts, tuple(args.window), args.seed, args.bootstrap, args.resume,
        cluster_spec(args),
    )  # fmt: skip

    def on_image(n: int, total: int, name: str) -> None:
        if not args.quiet and sys.stderr.isatty():
            print(f"[{n}/{total}] {name}", file=sys.stderr)

    try:
        outcome = run_stability(
            request,
            on_image=on_image,
            on_cluster=lambda link, n: print(f"{n} Dask workers; dashboard {link}", file=sys.stderr),
        )
    except (ValueError, RuntimeError, OSError) as exc:  # includes a scheduler that cannot be reached
        print(str(exc), file=sys.stderr)
        return 2
    for row in outcome.summary:
        what = row["kind"] + (f" ({row['perturbation']})" if row["perturbation"] else "")
        line = f"{row['method']:<18} {what:<28} n={row['n']:<4} SSIM {row['ssim']:.3f} "
        line += f"[{row['ssim_low']:.3f}, {row['ssim_high']:.3f}]  Spearman {row['spearman']:.3f}"
        if row["max_sensitivity"] == row["max_sensitivity"]:  # not NaN: a noise row
            line += f"  max-sens {row['max_sensitivity']:.4f}  avg-sens {row['avg_sensitivity']:.4f}"
        if row["lipschitz"] == row["lipschitz"]:  # not NaN: a Lipschitz row
            low, high = row["lipschitz_low"], row["lipschitz_high"]
            line += f"  Lipschitz {row['lipschitz']:.4f} [{low:.4f}, {high:.4f}]"
        print(line)
    for source, reason in outcome.problems:
        print(f"problem: {source}: {reason}", file=sys.stderr)
    print(f"wrote {args.out / 'stability.csv'} and {args.out / 'summary.csv'}")
    return 0 if outcome.summary else 1


def load_models(texts: list[str], device: str | None):
    """``--model``s by name, one per checkpoint of a manifest listing several (``name [stem]``);
    None, with the reason on stderr, if one cannot be loaded."""
    from viewer.inference.catalog import resolve_model
    from viewer.inference.checkpoint import CheckpointError
    from viewer.inference.manifest import ManifestError, load_manifest
    from viewer.inference.model import LoadedModel
    from viewer.io.naming import unique_name
    from viewer.io.safe_text import printable

    models: dict[str, LoadedModel] = {}
    used: set[str] = set()
    try:
        for text in texts:
            manifest = load_manifest(resolve_model(text))
            several = len(manifest.checkpoints) > 1
            for weights in manifest.checkpoints or (manifest.weights,):
                name = f"{manifest.name} [{weights.stem}]" if several else manifest.name
                models[unique_name(printable(name), used)] = LoadedModel(manifest.checkpoint(weights), device)
    except (ManifestError, CheckpointError, RuntimeError) as exc:
        print(f"cannot load the model: {exc}", file=sys.stderr)
        return None
    return models


def _shifts(texts: list[str]) -> tuple[tuple[int, int], ...] | None:
    out = []
    for text in texts:
        try:
            dy, dx = (int(v) for v in text.split(","))
        except ValueError:
            print(f"--shift takes DY,DX in whole pixels (e.g. 2,-3), not {text!r}", file=sys.stderr)
            return None
        out.append((dy, dx))
    return tuple(out)
