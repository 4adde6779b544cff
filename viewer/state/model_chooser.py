"""Which model looks at the image on screen, and what the user must be told about that choice.

A DICOM image says what it is (its Modality), and a model says what it was made for (its
manifest's ``modalities``): a head CT opened while a chest model is in use switches to a CT model.
A PNG, JPEG or TIFF says nothing; that is how most public chest data sets ship (NIH ChestX-ray14,
the paediatric pneumonia and COVID collections), so keeping whatever model was in use would have
a head-CT model explain a chest film. For such an image, in this order:

1. the model the user chose for images without a modality (asked once, remembered by the GUI);
2. the modality of the DICOM studies opened with it (a folder of a CT series and its PNG exports);
3. its look: one grey or colour picture of at least ``RADIOGRAPH_SIDE`` pixels on its long side is
   a radiograph (NIH's films are 1024 x 1024, the paediatric sets' larger);
4. otherwise the chest model is used meanwhile and the user is asked, once, which model to use for
   such images (:class:`ModelQuestion`).

Whatever was assumed is said in the model panel and in every export (:func:`caution`), as is a
model used on a modality it was not made for (an MR study with only chest and CT models).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from viewer.inference.manifest import ManifestError, ModelManifest
from viewer.io.discovery import Discovery
from viewer.io.image import Image
from viewer.io.sources import FileRef
from viewer.state.model_catalog import ModelCatalog

# A picture this large on its long side is taken for a radiograph (CT slices are 512 x 512).
RADIOGRAPH_SIDE = 1024
# What a radiograph without a Modality is taken to be, in the order a model's list is searched.
RADIOGRAPH = ("CR", "DX")


@dataclass(frozen=True)
class ModelQuestion:
    """Which model should explain images that say nothing of their modality: asked once."""

    kind: str  # what the image is, as a user names it: "PNG", "JPEG", "TIFF"
    used: str  # the model used until the user answers
    choices: tuple[tuple[str, str], ...]  # (model, what it was made for: "CR, DX images")


@dataclass(frozen=True)
class ModelChoice:
    """The model for an image and what was assumed to choose it."""

    model: str | None  # the model to switch to; None keeps the one in use
    modality: str  # the image's own modality, or the one assumed ("" when nothing is known)
    assumed: str = ""  # how it was assumed, said on screen; "" when the image says it itself
    question: ModelQuestion | None = None

    @property
    def images(self) -> str:
        """What the model was chosen for, in a status line: "CR images", "this image"."""
        return f"{self.modality} images" if self.modality else "this image"


class ModelChooser:
    """Chooses the model for each opened image (see the module docstring). ``raster_model`` is
    the user's answer for images without a modality; the GUI saves it between runs."""

    def __init__(self, catalog: ModelCatalog) -> None:
        self.catalog = catalog
        self.raster_model: str | None = None
        self.asked = False  # the question was put this run (it is put once)

    def choose(
        self, image: Image, current: str, found: Discovery | None = None, index: int = -1
    ) -> ModelChoice:
        """The model for ``image`` (series ``index`` of what was ``found``) while ``current`` is
        in use."""
        others = [s.modality for i, s in enumerate(found.series) if i != index] if found else []
        if image.modality:
            return ModelChoice(self.catalog.for_modality(image.modality, current), image.modality)
        kind = kind_of(image)
        remembered = self._manifest(self.raster_model)
        if remembered is not None:
            modality = next(iter(remembered.modalities), "")
            said = f"the model you chose for {kind} images"
            return ModelChoice(_switch(self.raster_model, current), modality, said)
        dicom = [m for m in others if m]
        if dicom:
            modality = Counter(dicom).most_common(1)[0][0]
            said = f"like the {modality} studies opened with it"
            return ModelChoice(_switch(self._for(modality), current), modality, said)
        radiograph = self._for(*RADIOGRAPH)
        modality = self._first_accepted(radiograph, RADIOGRAPH)
        if image.n_frames == 1 and max(image.rows, image.columns) >= RADIOGRAPH_SIDE:
            said = f"taken for a radiograph ({image.rows} x {image.columns})"
            return ModelChoice(_switch(radiograph, current), modality, said)
        used = radiograph or current
        question = None
        choices = self._choices()
        if not self.asked and len(choices) > 1:
            self.asked = True
            question = ModelQuestion(kind, used, choices)
        said = f"{image.rows} x {image.columns}, too small to be taken for a radiograph"
        return ModelChoice(_switch(used, current), modality if radiograph else "", said, question)

    def answer(self, model: str) -> None:
        """The user's choice of model for images without a modality, from now on."""
        self.raster_model = model
        self.asked = True

    def caution(self, name: str, image: Image | None, choice: ModelChoice | None) -> str | None:
        """``"<model's display name>: <what to know>"`` for ``image`` (a synthetic-only model on a
        real image, an assumed modality, a model made for another modality), or None."""
        manifest = self._manifest(name)
        if manifest is None or image is None:
            return None
        said = []
        synthetic = manifest.caution(image)
        if synthetic:
            said.append(synthetic.split(": ", 1)[1])
        modality = choice.modality if choice is not None else image.modality
        if choice is not None and choice.assumed:
            said.append(f"{kind_of(image)} without a modality: {choice.assumed}")
        if modality and manifest.modalities and not manifest.accepts(modality):
            said.append(f"made for {_made_for(manifest)}, not {modality}")
        elif not modality and manifest.modalities:
            said.append(f"made for {_made_for(manifest)}; this image's modality is unknown")
        return f"{manifest.name}: " + "; ".join(said) if said else None

    # -- the catalog's models by what they were made for -----------------------------------------
    def _manifest(self, name: str | None) -> ModelManifest | None:
        path = self.catalog.path(name) if name else None
        try:
            return self.catalog.manifest(path) if path is not None else None
        except (ManifestError, OSError):
            return None

    def _for(self, *modalities: str) -> str | None:
        """The first model made for one of ``modalities`` (in their order), or None."""
        preferred = self.catalog.by_preference()  # classifiers first
        for modality in modalities:
            for name, manifest in preferred:
                if manifest.modalities and manifest.accepts(modality):
                    return name
        return None

    def _first_accepted(self, name: str | None, modalities: Sequence[str]) -> str:
        manifest = self._manifest(name)
        if manifest is None:
            return ""
        return next((m for m in modalities if manifest.accepts(m)), "")

    def _choices(self) -> tuple[tuple[str, str], ...]:
        found = []
        for name in self.catalog.models:
            manifest = self._manifest(name)
            if manifest is not None:
                found.append((name, _made_for(manifest)))
        return tuple(found)


def _switch(model: str | None, current: str) -> str | None:
    return None if model is None or model == current else model


def _made_for(manifest: ModelManifest) -> str:
    return f"{', '.join(manifest.modalities)} images" if manifest.modalities else "any images"


def kind_of(image: Image) -> str:
    """What a user calls the image's file: its suffix (``PNG``), or ``DICOM``."""
    if image.kind == "dicom" or not image.frames:
        return "DICOM image"
    suffix = Path(FileRef.parse(image.frames[0].source).name).suffix.lstrip(".").upper()
    return {"JPG": "JPEG", "TIF": "TIFF"}.get(suffix, suffix or "picture")


__all__ = ["RADIOGRAPH_SIDE", "ModelChoice", "ModelChooser", "ModelQuestion", "kind_of"]
