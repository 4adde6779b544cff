"""**Add model...** on a weights file: the window's ``saliency-viewer model init``.

The file is read in the background for what it shows about itself (architecture, input channels
and size, output width and kind: :mod:`viewer.inference.model_init`); the dialog shows that and
asks for the one thing no file says, the labels. Accepting writes ``manifest.toml`` beside the
file (whole or not at all, replacing one only when the user says so); then the model is added
and the model doctor's report opens (:mod:`viewer.ui.model_commands`)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from viewer.inference.model_init import (
    Inferred,
    InitError,
    infer_model,
    manifest_text,
    parse_labels,
    write_manifest,
)
from viewer.io.safe_text import printable
from viewer.ui.worker import Job, JobRunner


def describe(found: Inferred) -> str:
    """What the file showed, in a line a person reads."""
    size = (
        f"{found.size[0]} x {found.size[1]}" if found.size else "input size not recorded (224 x 224 assumed)"
    )
    outputs = f"{found.outputs} outputs" if found.outputs is not None else "output width unknown"
    return f"{found.arch}, {found.in_channels} channel(s), {size}, {outputs}"


class ModelSetupDialog(QDialog):
    """Non-modal while the file is read; OK writes the manifest and emits ``written``."""

    written = Signal(object)  # Path of the manifest.toml written

    def __init__(self, parent: QWidget, runner: JobRunner, weights: Path):
        super().__init__(parent)
        self.setObjectName("model_setup")
        self.setWindowTitle(f"Add model: {printable(weights.name)}")
        self.weights = weights
        self.found: Inferred | None = None
        self.status = QLabel(f"Reading {printable(weights.name)}...")
        self.status.setObjectName("model_setup_status")
        self.status.setWordWrap(True)
        self.what = QLabel()
        self.what.setWordWrap(True)
        self.name = QLineEdit(weights.stem)
        self.labels = QLineEdit()
        self.labels.setObjectName("model_setup_labels")
        self.labels.setPlaceholderText("effusion, nodule, pneumothorax")
        self.labels.setToolTip("One name per output of the network, in output order, comma-separated")
        form = QFormLayout()
        form.addRow("Found", self.what)
        form.addRow("Name", self.name)
        form.addRow("Labels", self.labels)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Write manifest and add")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(False)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        self.resize(560, 220)

        def run(job: Job) -> None:
            job.emit("model-init", infer_model(weights))

        runner.result.connect(self._on_result)
        runner.finished.connect(self._on_finished)
        self.job = runner.submit(Job("model-init", run, description=f"Reading {weights.name}"))

    def _on_result(self, job: Job, kind: str, payload: object) -> None:
        if job is not self.job or kind != "model-init":
            return
        self.found = payload
        self.what.setText(describe(payload))
        count = f" ({payload.outputs}, in output order)" if payload.outputs is not None else ""
        notes = "".join(f"\n{printable(note)}" for note in payload.notes)
        self.status.setText(f"The file does not name its labels: give one per output{count}.{notes}")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(True)
        self.labels.setFocus()

    def _on_finished(self, job: Job, outcome: str) -> None:
        if job is self.job and outcome.startswith("failed"):
            self.status.setText(
                f"Cannot add {printable(self.weights.name)}: {outcome.removeprefix('failed: ')}"
            )

    def accept(self) -> None:
        """Write the manifest, or say what is wrong and stay open."""
        if self.found is None:
            return
        try:
            labels = parse_labels(self.labels.text(), self.found.outputs)
            text = manifest_text(
                self.weights, self.found, labels, self.name.text().strip() or self.weights.stem
            )
            target = self.weights.parent / "manifest.toml"
            force = target.exists() and self._replace(target)
            if target.exists() and not force:
                return
            written = write_manifest(self.weights, text, force=force)
        except (InitError, OSError) as exc:
            self.status.setText(str(exc))
            return
        self.written.emit(written)
        super().accept()

    def _replace(self, target: Path) -> bool:
        answer = QMessageBox.question(
            self, "Replace manifest", f"{target} exists. Replace it with one for {self.weights.name}?"
        )
        return answer == QMessageBox.StandardButton.Yes
