"""The File menu's exports: ask where, write atomically, say what was written or why not.

The dialog proposes the folder of the last export (remembered, ``export/folder``) and a name from
the study and the method, ``cxr_0002_gradcam.png``: file-name safe, and never a patient
identifier (a file named after the patient, or by a UID, is named by its modality and
description instead). A name taken in that folder gets ``_2``, ``_3``: exports never replace a
file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from viewer.io.safe_text import printable
from viewer.io.sources import FileRef
from viewer.state import ViewerState
from viewer.ui import exports

_IMAGES = "PNG (*.png);;JPEG (*.jpg *.jpeg)"
# What each export adds to the study's name, and its suffix.
_NAMES = {
    "view": ("", ".png"),
    "native": ("_native", ".png"),
    "sheet": ("_methods", ".png"),
    "pm": ("_map", ".dcm"),
    "sc": ("_sc", ".dcm"),
}
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)+")
FOLDER_KEY = "export/folder"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", printable(text)).strip("._-")


def _identifiers(state: ViewerState) -> list[str]:
    """The patient's name parts, ID, accession number and birth date as a file name spells them."""
    ident = state.image.identity
    words = re.split(r"[\s^,]+", ident.patient_name)
    words += [ident.patient_id, ident.accession_number, ident.patient_birth_date]
    return [_safe(w).lower() for w in words if len(_safe(w)) >= 2]


def study_name(state: ViewerState) -> str:
    """The image's file stem (its folder's name for a series of several files), unless that names
    the patient or is a UID; then its modality and description (``cr_chest_pa``)."""
    image = state.image
    if image is None:
        return "image"
    sources = {f.source for f in image.frames}
    first = Path(FileRef.inner(image.frames[0].source)) if image.frames else Path("image")
    stem = _safe(first.parent.name if len(sources) > 1 else first.stem)
    lowered = stem.lower()
    if not stem or _UID.fullmatch(stem) or any(word in lowered for word in _identifiers(state)):
        ident = image.identity
        described = ident.series_description or ident.study_description or ident.body_part
        stem = _safe(f"{ident.modality or image.kind} {described}".strip()).lower() or "image"
    return stem


def export_name(state: ViewerState, kind: str) -> str:
    """``<study>[_im<slice>][_<method>]<what><suffix>``, e.g. ``cxr_0002_gradcam.png``,
    ``ct_0001_im12_gradcam_native.png``."""
    extra, suffix = _NAMES[kind]
    parts = [study_name(state)]
    image = state.image
    if image is not None and image.n_frames > 1:
        parts.append(f"im{state.frame + 1}")
    layer = state.active()
    if layer is not None and kind != "sheet":
        parts.append(_safe(layer.method.replace("+", "p")))
    return "_".join(p for p in parts if p) + extra + suffix


def free_path(folder: Path, name: str) -> Path:
    """``folder / name``, or ``name_2``, ``name_3``, ... when it is taken."""
    path, k = folder / name, 2
    stem, suffix = Path(name).stem, Path(name).suffix
    while path.exists():
        path, k = folder / f"{stem}_{k}{suffix}", k + 1
    return path


class ExportDialogs:
    """``settings`` (default: the parent window's) remembers the last export folder."""

    def __init__(
        self,
        parent: QWidget,
        context: Callable[[], exports.ExportContext],
        folder: Callable[[], str],
        say: Callable[[str, int], None],
        settings: QSettings | None = None,
    ) -> None:
        self.parent, self.context, self.folder, self.say = parent, context, folder, say
        self.settings = settings if settings is not None else getattr(parent, "settings", None)

    def export_folder(self) -> Path:
        """The last export's folder while it exists, else where the file dialogs start."""
        last = str(self.settings.value(FOLDER_KEY, "")) if self.settings is not None else ""
        return Path(last) if last and Path(last).is_dir() else Path(self.folder())

    def proposal(self, kind: str) -> Path:
        return free_path(self.export_folder(), export_name(self.context().state, kind))

    def ask_export(self, kind: str) -> None:
        """``view`` (the screen), ``native`` (the image's own grid) or ``sheet`` (every method)."""
        path, _ = QFileDialog.getSaveFileName(self.parent, "Export", str(self.proposal(kind)), _IMAGES)
        if path:
            self._report(lambda: exports.save(kind, self.context(), Path(path)))

    def ask_export_dicom(self, kind: str) -> None:
        """``pm``: the map as a Parametric Map or Segmentation; ``sc``: the view as Secondary Capture."""
        path, _ = QFileDialog.getSaveFileName(
            self.parent, "Export DICOM", str(self.proposal(kind)), "DICOM (*.dcm)"
        )
        if path:
            self._report(lambda: exports.save_dicom(self.context(), kind, Path(path)))

    def copy_view(self) -> None:
        exports.copy_view(self.context())
        self.say("View copied to the clipboard", 3000)

    def _report(self, write: Callable[[], Path]) -> None:
        context = self.context()
        try:
            path = write()
        except (OSError, ValueError) as exc:
            context.session.reports.report_error(f"Export failed: {exc}")
            QMessageBox.warning(self.parent, "Export failed", str(exc))
            return
        if self.settings is not None:
            self.settings.setValue(FOLDER_KEY, str(Path(path).parent))
        self.say(f"Wrote {path}", 8000)
