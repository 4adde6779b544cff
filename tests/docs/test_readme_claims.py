"""What the README says of the program, held against the program: the commands it lists are the
command line's, its set-up commands are the Makefile's, and it says nothing false about the
network while the viewer talks to PACS servers."""

from __future__ import annotations

import re
from pathlib import Path

from viewer.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _subcommands(name: str) -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._subparsers._group_actions if a.dest == "command")  # argparse's own
    sub = action.choices[name]
    nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
    return set(nested[0].choices) if nested else set()


def test_the_command_summary_lists_every_command_and_model_action():
    summary = README[: README.index("## From your notebook")]
    listed = set(re.findall(r"`([a-z]+)`", summary))
    assert set(COMMANDS) <= listed, set(COMMANDS) - listed
    assert _subcommands("model") <= listed, _subcommands("model") - listed


def test_the_set_up_commands_are_make_targets():
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", README, re.M):
        assert re.search(rf"^{target}:", makefile, re.M), f"README runs make {target}, the Makefile has none"


def test_no_claim_that_nothing_goes_over_the_network():
    import viewer.io.pacs  # noqa: F401 (the viewer has PACS clients: the claim would be false)

    lowered = " ".join(README.lower().split())
    assert "never sends anything" not in lowered and "no network access" not in lowered
