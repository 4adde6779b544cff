"""**Model > Check model...**: the model doctor's report on the model in use, run in the background
on the image on screen (or a bundled sample), shown as plain text the user can copy."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from viewer.inference.doctor import ModelReport, check_model
from viewer.inference.in_memory import is_in_memory
from viewer.io.image import Image
from viewer.ui.worker import Job, JobRunner


class ModelCheckDialog(QDialog):
    """Non-modal; the check runs on the worker thread and the report replaces "Checking..."."""

    def __init__(self, parent: QWidget, runner: JobRunner, manifest: str | Path, image: Image | None):
        super().__init__(parent)
        self.setObjectName("model_check")
        self.setWindowTitle(f"Check model: {Path(manifest).parent.name}")
        self.report: ModelReport | None = None
        self.status = QLabel("Checking the model...")
        self.text = QPlainTextEdit(readOnly=True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.resize(760, 640)
        name = image.identity.series_description if image is not None else ""
        self.job: Job | None = None
        if is_in_memory(manifest):  # nothing to check on disk: its network was probed when handed over
            self.setWindowTitle("Check model")
            self.status.setWordWrap(True)
            self.status.setText(
                "The model doctor checks model files (manifest, weights, graph). This model came from "
                "memory, from the Python session that opened this window: it has no file to check. "
                "Its layers and outputs were probed when it was handed over."
            )
            return

        def run(job: Job) -> None:
            job.emit("model-check", check_model(manifest, image, image_name=name or "the image on screen"))

        runner.result.connect(self._on_result)
        runner.finished.connect(self._on_finished)
        self.job = runner.submit(Job("model-check", run, description="Checking the model"))

    def _on_result(self, job: Job, kind: str, payload: object) -> None:
        if job is self.job and kind == "model-check":
            self.report = payload
            self.text.setPlainText(payload.text())
            self.status.setText(
                "The viewer can use this model." if payload.ok else f"Problem: {payload.error}"
            )
            self.status.setWordWrap(True)

    def _on_finished(self, job: Job, outcome: str) -> None:
        if job is self.job and outcome.startswith("failed"):
            self.status.setText(f"The check stopped: {outcome[len('failed: ') :]}")


def show_model_check(
    parent: QWidget, runner: JobRunner, manifest: str | Path, image: Image | None
) -> ModelCheckDialog:
    dialog = ModelCheckDialog(parent, runner, manifest, image)
    dialog.show()
    return dialog
