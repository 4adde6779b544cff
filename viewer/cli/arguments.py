"""Arguments the batch subcommands (``explain``, ``evaluate``) share, declared once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_images_model_methods(parser: argparse.ArgumentParser, *, all_methods: bool = False) -> None:
    """INPUT..., --model and --methods."""
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="files, folders, ZIP, DICOMDIR or study URLs on a PACS"
    )
    parser.add_argument("--model", required=True, help="a bundled model's name or a manifest.toml")
    parser.add_argument(
        "--methods",
        default=None,  # the viewer's default set, resolved when run (building the parser needs no torch)
        help="comma-separated method ids (default: the viewer's default set)"
        + ("; 'all' for every method" if all_methods else ""),
    )
    add_trust_code(parser)


TRUST_CODE_HELP = (
    'import the Python file a manifest\'s arch = "python:net.py:Class" names (your own code: '
    "importing runs it); never for a model from a ZIP, a PACS or an address"
)


def add_trust_code(parser: argparse.ArgumentParser) -> None:
    """--trust-code: the user's consent, for this run, to import the code of python: models."""
    parser.add_argument("--trust-code", action="store_true", help=TRUST_CODE_HELP)


def input_paths(texts: list[str]) -> tuple[list[Path], list[tuple[str, str]]] | None:
    """INPUT... as paths, study URLs retrieved from their PACS into the local cache first, and the
    study URLs whose server failed as ``(url, reason)``: each said on stderr, the run goes on
    without them. None, with the reason on stderr, when a URL is wrong in itself (credentials in
    it, an unknown node): nothing has been asked of any server then."""
    from viewer.cli.pacs import retrieve_each
    from viewer.io.pacs.nodes import ConfigError

    try:
        paths, unreachable = retrieve_each(list(texts))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return None
    for source, reason in unreachable:
        print(f"skipped {source}: {reason}", file=sys.stderr)
    return paths, unreachable


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


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """--workers / --scheduler (where the studies run) and --device (what the model runs on)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="run the studies on a local Dask cluster of N processes",
    )
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the studies on a running Dask scheduler (tcp://host:8786); inputs, annotations and "
        "the model must be at the same paths on its workers",
    )
    parser.add_argument(
        "--device",
        help="torch device of the model, here and on every worker (cpu, cuda, cuda:1; default: a GPU "
        "if there is one, on a cluster each worker's own)",
    )


def cluster_spec(args: argparse.Namespace):
    """The ``ClusterSpec`` of --workers / --scheduler / --device; None to run in this process."""
    from viewer.batch.cluster_spec import ClusterSpec

    if not (args.workers or args.scheduler):
        return None
    return ClusterSpec(args.scheduler, args.workers, args.device)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def load_model(name_or_path: str, device: str | None = None):
    """The ``LoadedModel`` of ``--model`` (a bundled name or a manifest) on ``device``; None, with
    the reason on stderr, if it cannot be loaded."""
    from viewer.inference.catalog import resolve_model
    from viewer.inference.checkpoint import CheckpointError
    from viewer.inference.manifest import ManifestError
    from viewer.inference.model import LoadedModel

    try:
        return LoadedModel.from_manifest(resolve_model(name_or_path), device)
    except (ManifestError, CheckpointError, RuntimeError) as exc:  # RuntimeError: no such device
        print(f"cannot load the model: {exc}", file=sys.stderr)
        return None
