"""``saliency-viewer``: the desktop viewer, or a headless subcommand (``info``, ``phantom``, ``explain``).

``saliency-viewer [PATH...]`` opens the window; a first argument that names a subcommand runs the
command line instead, without importing Qt. Either runs with its terminal output guarded
(``viewer.cli.terminal``): no control character from a file reaches the terminal, and a closed
stdout (``| head``) ends the program quietly with status 141.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from viewer import cli
from viewer.cli.terminal import run_guarded

_CLI_FLAGS = ("--decode-worker", "--version")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--decode-worker"]:  # a pixel decoder speaking its own protocol on stdout
        return cli.main(argv)
    if argv and (argv[0] in cli.COMMANDS or argv[0] in _CLI_FLAGS):
        return run_guarded(lambda: cli.main(argv))

    def gui() -> int:
        from viewer.ui.app import main as gui_main

        return gui_main(argv)

    return run_guarded(gui)
