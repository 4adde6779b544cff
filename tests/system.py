"""What the tests need of the machine: system programs that .ci/run installs."""

from __future__ import annotations

import os
import shutil

import pytest


def need_program(program: str) -> str:
    """The path of a system program a test needs: a skip here, a failure in CI (.ci/run installs
    what the tests need, so a missing one there is a broken CI script, not an optional extra)."""
    path = shutil.which(program)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{program} is missing: .ci/run installs it")
        pytest.skip(f"{program} is not installed (Debian: see .ci/run)")
    return path
