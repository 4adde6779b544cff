"""Where the viewer keeps the user's own settings files (PACS nodes, trusted model files)."""

from __future__ import annotations

import os
from pathlib import Path


def config_folder() -> Path:
    """``saliency-viewer`` in the user's configuration folder: ``%APPDATA%`` on Windows,
    ``$XDG_CONFIG_HOME`` (default ``~/.config``) elsewhere."""
    if os.name == "nt":
        base = os.environ.get("APPDATA", "~")
    else:
        base = os.environ.get("XDG_CONFIG_HOME") or "~/.config"
    return Path(base).expanduser() / "saliency-viewer"


__all__ = ["config_folder"]
