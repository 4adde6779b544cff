"""The File menu's exports: ask where, write atomically, say what was written or why not."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from viewer.ui import exports

_IMAGES = "PNG (*.png);;JPEG (*.jpg *.jpeg)"
_RENDERS = {
    "view": ("view", exports.save_view),
    "native": ("image", exports.save_native),
    "sheet": ("contact_sheet", exports.save_contact_sheet),
}


class ExportDialogs:
    def __init__(
        self,
        parent: QWidget,
        context: Callable[[], exports.ExportContext],
        folder: Callable[[], str],
        say: Callable[[str, int], None],
    ) -> None:
        self.parent, self.context, self.folder, self.say = parent, context, folder, say

    def ask_export(self, kind: str) -> None:
        """``view`` (the screen), ``native`` (the image's own grid) or ``sheet`` (every method)."""
        stem, save = _RENDERS[kind]
        path, _ = QFileDialog.getSaveFileName(
            self.parent, "Export", str(Path(self.folder()) / f"{stem}.png"), _IMAGES
        )
        if path:
            self._report(lambda: save(self.context(), Path(path)))

    def ask_export_dicom(self, kind: str) -> None:
        """``pm``: the map as a Parametric Map or Segmentation; ``sc``: the view as Secondary Capture."""
        name = "saliency_pm.dcm" if kind == "pm" else "saliency_sc.dcm"
        path, _ = QFileDialog.getSaveFileName(
            self.parent, "Export DICOM", str(Path(self.folder()) / name), "DICOM (*.dcm)"
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
            context.session.report_error(f"Export failed: {exc}")
            QMessageBox.warning(self.parent, "Export failed", str(exc))
            return
        self.say(f"Wrote {path}", 8000)
