"""``saliency-viewer``: the desktop viewer, or a headless subcommand (``info``, ``phantom``, ``explain``).

``saliency-viewer [PATH...]`` opens the window; a first argument that names a subcommand runs the
command line instead, without importing Qt.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from viewer import cli

_CLI_FLAGS = ("--decode-worker", "--version")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and (argv[0] in cli.COMMANDS or argv[0] in _CLI_FLAGS):
        return cli.main(argv)
    from viewer.ui.app import main as gui_main

    return gui_main(argv)
