"""Locate the bundled files, ``resources/`` and the demo models of ``models/``, from a source
checkout, an installed wheel or a frozen bundle.

Every other module asks this one, so the three layouts stay in one place:

- source checkout or editable install: ``<repo>/resources`` and ``<repo>/models``
- wheel: ``viewer/_resources`` and ``viewer/_models`` (hatch copies both into the package)
- PyInstaller bundle: ``<sys._MEIPASS>/resources`` and ``<sys._MEIPASS>/models``

A checkout counts only where ``pyproject.toml`` stands beside the package: in site-packages, a
``resources`` or ``models`` folder next to ``viewer`` belongs to some other distribution.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

_ENV_OVERRIDE = "SALIENCY_VIEWER_RESOURCES"
_PACKAGE_DIR = Path(__file__).resolve().parent


def _candidates(name: str) -> list[Path]:
    """Where the bundled folder ``name`` ("resources" or "models") may be, most specific first."""
    candidates: list[Path] = []
    if frozen_root := getattr(sys, "_MEIPASS", None):
        candidates.append(Path(frozen_root) / name)
    candidates.append(_PACKAGE_DIR / f"_{name}")
    if (_PACKAGE_DIR.parent / "pyproject.toml").is_file():
        candidates.append(_PACKAGE_DIR.parent / name)
    return candidates


@cache
def resources_root() -> Path:
    """The folder that holds the bundled resources (presets, sample studies, icons)."""
    candidates = _candidates("resources")
    if override := os.environ.get(_ENV_OVERRIDE):
        candidates.insert(0, Path(override))
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "Saliency Viewer's resources folder was not found; looked in: "
        + ", ".join(str(c) for c in candidates)
    )


@cache
def models_root() -> Path | None:
    """The folder of bundled demo models (one folder each, holding ``manifest.toml``), or None when
    this installation ships none."""
    return next((c for c in _candidates("models") if c.is_dir()), None)


def resource_path(*parts: str) -> Path:
    """Path of a bundled resource, e.g. ``resource_path("window_presets.toml")``."""
    path = resources_root().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"bundled resource missing: {path}")
    return path
