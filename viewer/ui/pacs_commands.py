"""The main window's PACS commands: Open from PACS, Send to PACS, the node editor, study URLs.

Send to PACS writes the chosen results (the active map as a Parametric Map or Segmentation, the
annotated view as a Secondary Capture, the drawn annotation as a Segmentation) into a private
temporary folder on the GUI thread (they are rendered from the view), then sends them in the
background into the study on screen, each naming the model as the algorithm that made it. The
header keeps the source study's identifiers so the PACS files the results with it (a de-identified
study stays so); the pictures show patient identifiers only when exports do.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QMainWindow,
    QVBoxLayout,
    QWidget,
)

from viewer.state.pacs_session import PacsSession
from viewer.state.session import ViewerSession
from viewer.ui.exports import ExportContext, save_dicom

# What can be sent: id -> (text, the file it is written to)
RESULTS = {
    "pm": ("Active map (Parametric Map, or Segmentation on a radiograph)", "map.dcm"),
    "sc": ("Annotated view (Secondary Capture)", "view_sc.dcm"),
    "seg": ("Drawn annotation (Segmentation)", "annotation_seg.dcm"),
    "sr": ("Measurements (Structured Report, TID 1500)", "measurements_sr.dcm"),
}


class SendDialog(QDialog):
    """A node and the results to send; ``available`` says which results exist now."""

    def __init__(self, nodes: list[str], available: dict[str, bool], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Send to PACS")
        self.setObjectName("pacs_send")
        self.node = QComboBox()
        self.node.setObjectName("send_node")
        self.node.addItems(nodes)
        self.boxes: dict[str, QCheckBox] = {}
        layout = QVBoxLayout(self)
        form = QFormLayout()
        form.addRow("Node", self.node)
        layout.addLayout(form)
        for key, (text, _) in RESULTS.items():
            box = QCheckBox(text)
            box.setObjectName(f"send_{key}")
            box.setEnabled(available.get(key, False))
            box.setChecked(available.get(key, False) and key != "seg")
            layout.addWidget(box)
            self.boxes[key] = box
        note = QLabel("Sent into the study on screen, naming the model as the algorithm that made them.")
        note.setWordWrap(True)
        layout.addWidget(note)
        ok, cancel = QDialogButtonBox.StandardButton.Ok, QDialogButtonBox.StandardButton.Cancel
        buttons = QDialogButtonBox(ok | cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def chosen(self) -> list[str]:
        return [key for key, box in self.boxes.items() if box.isChecked() and box.isEnabled()]


class PacsCommands:
    """Owns the PACS dialogs of ``window``; ``context()`` gives the export context of the view."""

    def __init__(
        self,
        window: QMainWindow,
        session: ViewerSession,
        pacs: PacsSession,
        context: Callable[[], ExportContext],
        say: Callable[[str, int], None],
    ):
        self.window, self.session, self.pacs = window, session, pacs
        self.context, self.say = context, say
        self.measurements = None  # the window's MeasurementBook, once its tools exist
        self.dialog = None
        pacs.error.connect(lambda message: say(message, 15000))
        pacs.sent.connect(lambda node: say(f"Sent to {node}", 8000))

    def open_dialog(self):
        """Open from PACS (one dialog, kept: its results are there when it is opened again)."""
        from viewer.ui.pacs_dialog import PacsDialog

        if self.dialog is None:
            self.dialog = PacsDialog(self.pacs, self.window, edit_nodes=self.edit_nodes)
        self.dialog.reload_nodes()
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog

    def edit_nodes(self, parent: QWidget | None = None) -> bool:
        from viewer.ui.pacs_nodes import NodeEditor

        saved = NodeEditor(parent or self.window).exec() == QDialog.DialogCode.Accepted
        if saved and self.dialog is not None:
            self.dialog.reload_nodes()
        return saved

    def available(self) -> dict[str, bool]:
        state = self.session.state
        dicom = state.image is not None and state.image.kind == "dicom"
        regions = state.annotation is not None and bool(state.annotation.regions)
        measured = self.measurements is not None and bool(self.measurements.items)
        return {
            "pm": dicom and state.active() is not None,
            "sc": dicom,
            "seg": dicom and regions,
            "sr": dicom and measured,
        }

    def ask_send(self) -> None:
        config = self.pacs.config()
        if config is None:
            return
        if not config.nodes:
            self.say("No PACS node is configured: add one in Preferences > PACS nodes...", 8000)
            return
        dialog = SendDialog(list(config.nodes), self.available(), self.window)
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.chosen():
            self.send(dialog.node.currentText(), dialog.chosen())

    def send(self, node: str, kinds: list[str]):
        """Write ``kinds`` of results and send them to ``node`` in the background."""
        from viewer.io import annotation_writer

        folder = Path(tempfile.mkdtemp(prefix="saliency-send-"))
        ctx = self.context()
        state = self.session.state
        paths = []
        try:
            for kind in kinds:
                path = folder / RESULTS[kind][1]
                if kind == "seg":
                    annotation_writer.save_annotation_seg(state.annotation, state.image, path)
                elif kind == "sr":
                    self.measurements.save(path, anonymize=False)  # into the study as it is on the PACS
                else:
                    save_dicom(ctx, kind, path, anonymize=False)
                paths.append(path)
        except (OSError, ValueError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            self.session.reports.report_error(f"Cannot send: {exc}")
            return None
        manifest = self.session.model.manifest()
        model = (manifest.name, Path(manifest.weights)) if manifest is not None else None
        self.say(f"Sending {len(paths)} object(s) to {node}...", 0)
        return self.pacs.send_files(
            node, paths, model=model, then=lambda _status: shutil.rmtree(folder, ignore_errors=True)
        )

    def open_urls(self, urls: list[str]):
        return self.pacs.open_urls(urls)
