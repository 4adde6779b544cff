"""The bundled demo models, and resolving a ``--model`` value (a bundled name or a manifest path)."""

from __future__ import annotations

from pathlib import Path

from viewer.inference.manifest import ManifestError
from viewer.resources import models_root


def bundled_models() -> dict[str, Path]:
    """Bundled model name -> its manifest, e.g. ``{"cxr_resnet18": .../manifest.toml}``."""
    root = models_root()
    if root is None:
        return {}
    return {p.parent.name: p for p in sorted(root.glob("*/manifest.toml"))}


def resolve_model(name_or_path: str | Path) -> Path:
    """The manifest for a bundled model's name, a manifest file, or a folder holding manifest.toml."""
    path = Path(name_or_path)
    if path.is_dir() and (path / "manifest.toml").is_file():
        return path / "manifest.toml"
    if path.is_file():
        return path
    bundled = bundled_models()
    if str(name_or_path) in bundled:
        return bundled[str(name_or_path)]
    known = ", ".join(bundled) or "none bundled"
    raise ManifestError(path, f"no such manifest file or bundled model (bundled: {known})")
