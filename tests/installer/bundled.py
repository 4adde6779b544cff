"""Which of the checkout's models a wheel and the frozen app carry: every folder of models/ with a
manifest.toml, less those pyproject's wheel ``exclude`` list names (``/models/<folder>``), the one
list that hatch, installer/saliency_viewer.spec and these tests all read."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_WHEEL = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
LEFT_OUT = {
    Path(entry).name for entry in _WHEEL["exclude"] if entry.startswith("/models/") and "*" not in entry
}
ALL_MODELS = sorted(p.parent for p in (ROOT / "models").glob("*/manifest.toml"))
MODELS = [m for m in ALL_MODELS if m.name not in LEFT_OUT]
