"""Graph files the user has chosen to trust, though they run more than pure tensor operators.

A TorchScript file whose code calls an operator outside :mod:`viewer.inference.graph_ops` (file
I/O, custom classes, anything the check cannot classify) is refused unless the user trusts that
exact file: ``saliency-viewer model trust FILE`` or the viewer's "Trust and load" answer. Trust is
kept by the file's SHA-256 in ``trusted-models.json`` in the user's configuration folder (never
beside the model, where whoever ships the model could write it), with the path and the operators
the user saw when they agreed; a changed file is a new file and is refused again.
``$SALIENCY_VIEWER_TRUST`` names another store (tests, managed installations).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from viewer.inference.manifest import ManifestError
from viewer.io.atomic import replace_bytes
from viewer.io.user_config import config_folder


@dataclass(frozen=True)
class TrustRequest:
    """What the user is asked to trust: one graph file of one model, and what it runs beyond pure
    tensor operators (``what`` says it in a sentence)."""

    manifest: Path
    weights: Path
    what: str
    operators: tuple[str, ...]


class UntrustedModelError(ManifestError):
    """A graph file that runs more than pure tensor operators and that the user has not trusted;
    ``request`` is what to ask the user."""

    def __init__(self, path: Path | str, weights: Path, reason: str, operators: list[str]):
        super().__init__(
            path,
            f"{weights.name} {reason}. It could read or write files or run code. If you trust where it "
            f"came from: saliency-viewer model trust {weights} (or answer Trust in the viewer)",
        )
        self.request = TrustRequest(Path(path), weights, f"{weights.name} {reason}", tuple(operators))


def store_path() -> Path:
    """``$SALIENCY_VIEWER_TRUST``, else ``trusted-models.json`` in the user's configuration folder."""
    if os.environ.get("SALIENCY_VIEWER_TRUST"):
        return Path(os.environ["SALIENCY_VIEWER_TRUST"]).expanduser()
    return config_folder() / "trusted-models.json"


def file_digest(path: Path) -> str:
    """The SHA-256 of the file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _entries() -> dict[str, dict]:
    try:
        data = json.loads(store_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: nothing is trusted
    return data if isinstance(data, dict) else {}


def is_trusted(path: Path) -> bool:
    """Whether the user trusts the file at ``path`` as it is now."""
    return file_digest(path) in _entries()


def trust(path: Path, operators: list[str]) -> None:
    """Record that the user trusts ``path`` (as its bytes are now) to run ``operators``."""
    entries = _entries()
    entries[file_digest(path)] = {
        "path": str(Path(path).resolve()),
        "operators": sorted(operators),
        "trusted": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    replace_bytes(store_path(), json.dumps(entries, indent=2).encode("utf-8"))


def untrust(path: Path) -> bool:
    """Forget the user's trust in ``path``; whether it was trusted."""
    entries = _entries()
    if entries.pop(file_digest(path), None) is None:
        return False
    replace_bytes(store_path(), json.dumps(entries, indent=2).encode("utf-8"))
    return True


__all__ = [
    "TrustRequest",
    "UntrustedModelError",
    "file_digest",
    "is_trusted",
    "store_path",
    "trust",
    "untrust",
]
