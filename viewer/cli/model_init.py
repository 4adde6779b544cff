"""``saliency-viewer model init FILE [--labels a,b,c] [--name NAME] [--force]``.

Writes ``manifest.toml`` beside a weights file from what the file shows about itself
(:mod:`viewer.inference.model_init`): architecture, input channels and size, output width and
kind. The labels are the one thing a file never says: ``--labels``, else a prompt when stdin is
a terminal, else an error saying so. Then runs the model doctor on the new manifest and prints
its report; the exit code is the doctor's (0: the viewer can use the model)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "write manifest.toml beside a weights file, from what the file shows, and check it"


def add_init(sub) -> None:
    init = sub.add_parser("init", help=HELP, description=__doc__)
    init.add_argument("file", type=Path, help="a .pt2, ONNX, TorchScript or state-dict weights file")
    init.add_argument("--labels", help="comma-separated label names, one per output, in output order")
    init.add_argument("--name", help="the model's name as the viewer shows it (default: the file's stem)")
    init.add_argument("--force", action="store_true", help="replace an existing manifest.toml")
    init.add_argument("--device", help="cpu or cuda, for the doctor's forward pass")


def run_init(args: argparse.Namespace, sample, emit) -> int:
    """Infer, write, then ``emit`` the doctor's report on ``sample(manifest)`` (an image and its
    name, as ``model check`` picks one)."""
    from viewer.inference.doctor import check_model
    from viewer.inference.model_init import InitError, infer_model, manifest_text, write_manifest

    try:
        found = infer_model(args.file)
        labels = _labels(args.labels, found.outputs)
        target = write_manifest(
            args.file, manifest_text(args.file, found, labels, args.name or args.file.stem), args.force
        )
    except InitError as exc:
        print(f"saliency-viewer: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {target}: arch {found.arch}, {found.in_channels} channel(s), {len(labels)} labels")
    for note in found.notes:
        print(f"  note: {note}")
    from viewer.inference.manifest import ManifestError, load_manifest

    try:
        image, name = sample(load_manifest(target))
    except (ManifestError, ValueError):
        image, name = None, ""
    return emit(check_model(target, image, image_name=name, device=args.device))


def _labels(text: str | None, outputs: int | None) -> list[str]:
    from viewer.inference.model_init import InitError, parse_labels

    if text is None:
        if not sys.stdin.isatty():
            raise InitError(
                "the file does not name its labels: pass --labels a,b,c"
                + (f" ({outputs} names, in output order)" if outputs else "")
            )
        text = input(f"Labels, comma-separated{f' ({outputs}, in output order)' if outputs else ''}: ")
    return parse_labels(text, outputs)
