"""Locate the files under ``resources/`` from a source checkout, an installed wheel or a frozen bundle.

Every other module asks this one, so the three layouts stay in one place:

- source checkout or editable install: ``<repo>/resources``
- wheel: ``viewer/_resources`` (hatch copies ``resources/`` there)
- PyInstaller bundle: ``<sys._MEIPASS>/resources``
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

_ENV_OVERRIDE = "SALIENCY_VIEWER_RESOURCES"


@cache
def resources_root() -> Path:
    """The folder that holds the bundled resources (presets, sample studies, icons)."""
    candidates: list[Path] = []
    if override := os.environ.get(_ENV_OVERRIDE):
        candidates.append(Path(override))
    if frozen_root := getattr(sys, "_MEIPASS", None):
        candidates.append(Path(frozen_root) / "resources")
    package_dir = Path(__file__).resolve().parent
    candidates += [package_dir / "_resources", package_dir.parent / "resources"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "Saliency Viewer's resources folder was not found; looked in: "
        + ", ".join(str(c) for c in candidates)
    )


@cache
def models_root() -> Path | None:
    """The folder of bundled demo models (``<repo>/models``, ``viewer/_models`` in a wheel, or
    ``<bundle>/models``), or None when this installation ships none."""
    candidates: list[Path] = []
    if frozen_root := getattr(sys, "_MEIPASS", None):
        candidates.append(Path(frozen_root) / "models")
    package_dir = Path(__file__).resolve().parent
    candidates += [package_dir / "_models", package_dir.parent / "models"]
    return next((c for c in candidates if c.is_dir()), None)


def resource_path(*parts: str) -> Path:
    """Path of a bundled resource, e.g. ``resource_path("window_presets.toml")``."""
    path = resources_root().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"bundled resource missing: {path}")
    return path
