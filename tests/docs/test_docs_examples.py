"""The documentation's examples run: every ```python block of a page, in order, in one namespace
(as a reader pastes them into one notebook), in a scratch folder. A ```text block right after a
python block is what that block prints, and must match."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["docs/notebook.md"]
_BLOCK = re.compile(r"```(python|text)\n(.*?)```", re.S)

pytestmark = pytest.mark.timeout(300)


def examples(page: Path) -> list[tuple[str, str | None]]:
    """(code, expected output or None) of each python block."""
    blocks = _BLOCK.findall(page.read_text())
    out = []
    for i, (kind, body) in enumerate(blocks):
        if kind == "python":
            after = blocks[i + 1] if i + 1 < len(blocks) else None
            out.append((body, after[1] if after and after[0] == "text" else None))
    return out


@pytest.mark.parametrize("page", PAGES)
def test_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from PySide6.QtCore import QSettings

    # A window an example opens keeps its preferences here, not in the user's own.
    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(tmp_path))
    namespace: dict = {"__name__": "__docs__"}
    found = examples(ROOT / page)
    assert found, f"{page} has no python examples"
    for number, (code, expected) in enumerate(found, 1):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"{page} example {number}", "exec"), namespace)
        if expected is not None:
            assert printed.getvalue() == expected, f"{page} example {number} printed {printed.getvalue()!r}"
