"""Arguments the batch subcommands (``explain``, ``evaluate``) share, declared once."""

from __future__ import annotations

import argparse
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


def chosen_methods(text: str | None) -> list[str]:
    """The method ids of ``--methods``: the viewer's default set when not given, every method for
    ``all``, else the comma-separated list (unknown ids are the caller's to report)."""
    from viewer.explain import DEFAULT_METHODS, METHODS

    if text is None:
        return list(DEFAULT_METHODS)
    if text == "all":
        return list(METHODS)
    return [m.strip() for m in text.split(",") if m.strip()]
