"""The models a user can choose: the bundled demo models, the ones they added by manifest, and
networks handed over in memory (a notebook's ``nn.Module``, for this run only)."""

from __future__ import annotations

from pathlib import Path

from viewer.inference.catalog import bundled_models
from viewer.inference.in_memory import is_in_memory
from viewer.inference.manifest import ManifestError, ModelManifest, load_manifest

# Tasks whose outputs are places (boxes, masks) rather than one probability per label.
_LOCATING = ("detection", "segmentation")


class ModelCatalog:
    """Model name -> manifest path, bundled first; manifests are parsed once and kept.

    ``user`` models are remembered between runs (by their manifest files); ``in_memory`` ones
    have a placeholder path and the manifest made for them, are never read from disk and never
    remembered (they are gone when the Python session that holds them ends)."""

    def __init__(self, user: list[str | Path] | None = None) -> None:
        self.bundled = bundled_models()
        self.user: dict[str, Path] = {}
        self.in_memory: dict[str, Path] = {}
        self._manifests: dict[Path, ModelManifest] = {}
        for path in user or []:
            try:
                manifest = self.manifest(path)
            except (ManifestError, OSError):
                continue  # a model removed since: forget it quietly
            self.user[manifest.name] = Path(path).resolve()

    @property
    def models(self) -> dict[str, Path]:
        return {**self.bundled, **self.user, **self.in_memory}

    def path(self, name: str) -> Path | None:
        return self.models.get(name)

    def manifest(self, path: str | Path) -> ModelManifest:
        """The parsed manifest at ``path`` (raises ``ManifestError`` or ``OSError``)."""
        key = Path(path) if is_in_memory(path) else Path(path).resolve()
        if key not in self._manifests:
            if is_in_memory(path):
                raise ManifestError(key, "no such model in memory")
            self._manifests[key] = load_manifest(key)
        return self._manifests[key]

    def add_in_memory(self, manifest: ModelManifest) -> str:
        """List a model held in memory under its manifest's name (see :meth:`in_memory_name`)."""
        self._manifests[Path(manifest.path)] = manifest
        self.in_memory[manifest.name] = Path(manifest.path)
        return manifest.name

    def in_memory_name(self, title: str) -> str:
        """How a network of class ``title`` is listed: ``"ChestCOVNet (in memory)"``, or
        ``"... (in memory, 2)"`` when that is taken (a network handed over again after more
        training is another model: its maps are its own)."""
        candidate, k = f"{title} (in memory)", 2
        while candidate in self.models:
            candidate, k = f"{title} (in memory, {k})", k + 1
        return candidate

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
        for name, manifest in self.by_preference():
            if manifest.modalities and manifest.accepts(modality):
                return name
        return None

    def by_preference(self) -> list[tuple[str, ModelManifest]]:
        """The models whose manifests parse, as ``(name, manifest)``, classifiers first (in the
        catalog's order otherwise). A classifier's probabilities are what the views show for any
        image; a detector's boxes or a segmenter's masks are asked for by choosing that model, so
        one bundled beside the chest classifier (``cxr_detector`` sorts before ``cxr_resnet18``)
        must never replace it as the model picked for a chest film."""
        found = []
        for name, path in self.models.items():
            try:
                found.append((name, self.manifest(path)))
            except (ManifestError, OSError):
                continue
        return sorted(found, key=lambda item: item[1].task in _LOCATING)
