"""Arguments the batch subcommands (``explain``, ``evaluate``) share, declared once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_images_model_methods(parser: argparse.ArgumentParser, *, all_methods: bool = False) -> None:
    """INPUT..., --model and --methods."""
    parser.add_argument(
        "inputs", nargs="+", type=Path, metavar="INPUT", help="files, folders, ZIP or DICOMDIR"
    )
    parser.add_argument("--model", required=True, help="a bundled model's name or a manifest.toml")
    parser.add_argument(
        "--methods",
        default=None,  # the viewer's default set, resolved when run (building the parser needs no torch)
        help="comma-separated method ids (default: the viewer's default set)"
        + ("; 'all' for every method" if all_methods else ""),
    )


def chosen_methods(text: str | None) -> list[str] | None:
    """The method ids of ``--methods``: the viewer's default set when not given, every method for
    ``all``, else the comma-separated list; None, with the reason on stderr, if one is unknown."""
    from viewer.explain import DEFAULT_METHODS, METHODS

    if text is None:
        return list(DEFAULT_METHODS)
    methods = list(METHODS) if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        print(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}", file=sys.stderr)
        return None
    return methods


def load_model(name_or_path: str):
    """The ``LoadedModel`` of ``--model`` (a bundled name or a manifest); None, with the reason on
    stderr, if it cannot be loaded."""
    from viewer.inference.catalog import resolve_model
    from viewer.inference.checkpoint import CheckpointError
    from viewer.inference.manifest import ManifestError
    from viewer.inference.model import LoadedModel

    try:
        return LoadedModel.from_manifest(resolve_model(name_or_path))
    except (ManifestError, CheckpointError) as exc:
        print(f"cannot load the model: {exc}", file=sys.stderr)
        return None
