"""``saliency-viewer``: the headless command line, built on the same core as the GUI.

Subcommands live in their own modules and register in ``COMMANDS``. ``viewer.launch`` sends
``saliency-viewer PATH...`` to the GUI; called directly, ``main`` with plain paths prints what
they hold (``info``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from viewer import __version__
from viewer.cli import evaluate, explain, info, model, pacs, phantom, stability

# name -> module with add_arguments(parser) and run(args) -> exit code
COMMANDS = {
    "info": info,
    "phantom": phantom,
    "explain": explain,
    "evaluate": evaluate,
    "stability": stability,
    "model": model,
    "pacs": pacs,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saliency-viewer",
        description="See where a CNN is looking, on real DICOM, next to the radiologist's annotation.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.__doc__))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--decode-worker"]:  # frozen bundles start decoder workers through the app
        from viewer.io.decode_worker import main as worker_main

        worker_main()
        return 0
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv = ["info", *argv]  # plain paths: show what they hold
    if not argv:
        argv = ["info", str(info.sample_studies())]
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 2
    if getattr(args, "trust_code", False):
        from viewer.inference.user_code import allow_user_code

        allow_user_code()  # the user's consent for this run (see viewer/inference/user_code.py)
    try:
        return COMMANDS[args.command].run(args)
    except KeyboardInterrupt:
        return 130
