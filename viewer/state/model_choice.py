"""The models a user can choose: the bundled demo models and the ones they added by manifest."""

from __future__ import annotations

from pathlib import Path

from viewer.inference.catalog import bundled_models
from viewer.inference.manifest import ManifestError, ModelManifest, load_manifest


class ModelCatalog:
    """Model name -> manifest path, bundled first; manifests are parsed once and kept."""

    def __init__(self, user: list[str | Path] | None = None) -> None:
        self.bundled = bundled_models()
        self.user: dict[str, Path] = {}
        self._manifests: dict[Path, ModelManifest] = {}
        for path in user or []:
            try:
                manifest = self.manifest(path)
            except (ManifestError, OSError):
                continue  # a model removed since: forget it quietly
            self.user[manifest.name] = Path(path).resolve()

    @property
    def models(self) -> dict[str, Path]:
        return {**self.bundled, **self.user}

    def path(self, name: str) -> Path | None:
        return self.models.get(name)

    def manifest(self, path: str | Path) -> ModelManifest:
        """The parsed manifest at ``path`` (raises ``ManifestError`` or ``OSError``)."""
        key = Path(path).resolve()
        if key not in self._manifests:
            self._manifests[key] = load_manifest(key)
        return self._manifests[key]

    def add(self, path: str | Path) -> str:
        """Add a user model by its manifest; its name (raises ``ManifestError``/``OSError``)."""
        manifest = load_manifest(path)  # read again: the user may have just edited it
        resolved = Path(path).resolve()
        self._manifests[resolved] = manifest
        self.user[manifest.name] = resolved
        return manifest.name

    def name_of(self, path: str | Path) -> str:
        """The catalog's name of the manifest at ``path``, added as a user model if it is new."""
        resolved = Path(path).resolve()
        for name, known in self.models.items():
            if Path(known).resolve() == resolved:
                return name
        return self.add(resolved)

    def for_modality(self, modality: str, current: str) -> str | None:
        """A model made for ``modality`` when ``current`` is not (a head CT model on a chest film
        would still answer, but nonsense); None when ``current`` fits or nothing does better."""
        try:
            chosen = self.manifest(self.models[current]) if current in self.models else None
        except (ManifestError, OSError):
            chosen = None
        if not modality or chosen is None or chosen.accepts(modality):
            return None
        for name, path in self.models.items():
            try:
                manifest = self.manifest(path)
            except (ManifestError, OSError):
                continue
            if manifest.modalities and manifest.accepts(modality):
                return name
        return None
