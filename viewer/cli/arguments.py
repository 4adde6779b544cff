"""Arguments the batch subcommands (``explain``, ``evaluate``) share, declared once."""

from __future__ import annotations

import argparse
from pathlib import Path

# The viewer's default method set (viewer.explain.registry.DEFAULT_METHODS), spelled out so that
# building the parser imports no torch.
DEFAULT_METHODS = "gradcam,gradcam++,guided-backprop,guided-gradcam,deconvnet,lime"


def add_images_model_methods(parser: argparse.ArgumentParser, *, all_methods: bool = False) -> None:
    """INPUT..., --model and --methods."""
    parser.add_argument(
        "inputs", nargs="+", type=Path, metavar="INPUT", help="files, folders, ZIP or DICOMDIR"
    )
    parser.add_argument("--model", required=True, help="a bundled model's name or a manifest.toml")
    parser.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help="comma-separated method ids (default: the viewer's default set)"
        + ("; 'all' for every method" if all_methods else ""),
    )
