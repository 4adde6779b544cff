"""**Tools > Evaluate folder...**: ``saliency-viewer evaluate`` from the GUI. The run goes on the
worker thread (the window stays responsive, Cancel stops it after the current batch and keeps the
images done), here or on Dask (local worker processes, or a running scheduler: ``--workers`` and
``--scheduler`` of the command line), shows its progress, lists the summary, and opens the report
when done."""

from __future__ import annotations

import html
import importlib.util
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from viewer.batch.cluster_spec import ClusterSpec
from viewer.batch.evaluation_run import EvaluationOutcome, EvaluationRequest, run_evaluation
from viewer.io.safe_text import printable
from viewer.state import tasks
from viewer.ui.worker import Job, JobRunner

_SHOWN = ("label", "method", "n", "miou", "miou_low", "miou_high", "hit_rate", "hit_low", "hit_high")


_WHERE = ("This computer", "Dask: local worker processes", "Dask: a running scheduler")


class EvaluateDialog(QDialog):
    def __init__(
        self, parent: QWidget, runner: JobRunner, store: tasks.ModelStore, manifest: str, methods: list[str]
    ):
        super().__init__(parent)
        self.setObjectName("evaluate")
        self.setWindowTitle("Evaluate folder")
        self.runner, self.store, self.manifest, self.methods = runner, store, manifest, methods
        self.job: Job | None = None
        self.outcome: EvaluationOutcome | None = None
        self.open_report_when_done = True
        self.images, self.annotations, self.out = QLineEdit(), QLineEdit(), QLineEdit()
        self.bootstrap = QSpinBox(minimum=0, maximum=100_000, value=1000)
        self.split = QDoubleSpinBox(
            minimum=0.0, maximum=0.9, singleStep=0.1, value=0.0, specialValueText="off"
        )
        self.resume = QCheckBox("Resume an interrupted run in this folder")
        self.where = QComboBox()
        self.where.addItems(_WHERE)
        self.workers = QSpinBox(minimum=1, maximum=512, value=2, suffix=" workers")
        self.scheduler = QLineEdit(placeholderText="tcp://host:8786")
        if importlib.util.find_spec("distributed") is None:
            for row in (1, 2):  # said, not hidden: the user learns the option exists and its extra
                self.where.model().item(row).setEnabled(False)
            self.where.setToolTip("Dask is not installed: pip install 'saliency-viewer[distributed]'")
        self.where.currentIndexChanged.connect(self._show_where)
        self._show_where()
        form = QFormLayout()
        form.addRow("Images", self._with_browse(self.images, folder=True))
        form.addRow("Annotations", self._with_browse(self.annotations, folder=False))
        form.addRow("Results folder", self._with_browse(self.out, folder=True))
        form.addRow("Methods", QLabel(", ".join(methods) or "none ticked in the model panel"))
        form.addRow("Bootstrap resamples", self.bootstrap)
        form.addRow("Tune thresholds on", self.split)
        form.addRow("", self.resume)
        where = QHBoxLayout()
        for widget in (self.where, self.workers, self.scheduler):
            where.addWidget(widget)
        form.addRow("Run on", where)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.dashboard = QLabel("")
        self.dashboard.setOpenExternalLinks(True)
        self.table = QTableWidget(0, len(_SHOWN))
        self.table.setHorizontalHeaderLabels(_SHOWN)
        self.run_button, self.cancel_button = QPushButton("Run"), QPushButton("Cancel")
        self.report_button = QPushButton("Open report")
        self.report_button.setEnabled(False)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(lambda: self.runner.cancel("evaluate"))
        self.report_button.clicked.connect(self.open_report)
        buttons = QHBoxLayout()
        for button in (self.run_button, self.cancel_button, self.report_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.dashboard)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        runner.result.connect(self._on_result)
        runner.progressed.connect(self._on_progress)
        runner.finished.connect(self._on_finished)
        self.resize(820, 560)

    def _with_browse(self, edit: QLineEdit, *, folder: bool) -> QWidget:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(edit)
        button = QPushButton("Browse...")
        layout.addWidget(button)

        def browse() -> None:
            if folder:
                path = QFileDialog.getExistingDirectory(self, "Choose a folder", edit.text())
            else:
                path, _ = QFileDialog.getOpenFileName(self, "Annotation file", edit.text())
            if path:
                edit.setText(path)

        button.clicked.connect(browse)
        return row

    def _show_where(self) -> None:
        self.workers.setVisible(self.where.currentIndex() == 1)
        self.scheduler.setVisible(self.where.currentIndex() == 2)

    def cluster(self) -> ClusterSpec | None:
        """Where the studies run: None here, else a local Dask cluster or a running scheduler."""
        if self.where.currentIndex() == 1:
            return ClusterSpec(workers=self.workers.value())
        if self.where.currentIndex() == 2:
            return ClusterSpec(scheduler=self.scheduler.text().strip())
        return None

    def request(self) -> EvaluationRequest:
        split = self.split.value()
        return EvaluationRequest(
            [Path(self.images.text())],
            [Path(self.annotations.text())],
            list(self.methods),
            Path(self.out.text()),
            self.bootstrap.value(),
            resume=self.resume.isChecked(),
            split_thresholds=split if split > 0 else None,
            cluster=self.cluster(),
        )

    def start(self) -> Job | None:
        if not (self.images.text() and self.annotations.text() and self.out.text() and self.methods):
            self.status.setText("Choose the images, the annotations, a results folder, and tick some methods")
            return None
        if self.where.currentIndex() == 2 and not self.scheduler.text().strip():
            self.status.setText("Type the Dask scheduler's address (tcp://host:8786)")
            return None
        request, manifest, store = self.request(), self.manifest, self.store

        def run(job: Job) -> None:
            model = store.get(manifest)
            try:
                outcome = run_evaluation(
                    model,
                    request,
                    on_image=lambda n, total, name: job.emit("evaluation-image", (n, total, name)),
                    on_progress=job.progress,
                    cancel=job.cancel,
                    on_cluster=lambda link, n: job.emit("evaluation-cluster", (link, n)),
                    on_count=lambda done, failed, of: job.emit("evaluation-count", (done, failed, of)),
                )
            except (ValueError, OSError, RuntimeError) as exc:  # the user's input, or the cluster's
                job.emit("evaluation-refused", str(exc))
                return
            job.emit("evaluation", outcome)

        self.outcome = None
        self.report_button.setEnabled(False)
        self.status.setText("Starting...")
        self.dashboard.setText("")
        self.job = self.runner.submit(Job("evaluate", run, description="Evaluation"))
        return self.job

    def _on_result(self, job: Job, kind: str, payload) -> None:
        if job is not self.job:
            return
        if kind == "evaluation-image":
            n, total, name = payload
            self.status.setText(f"Image {n} of {total}: {name}")
            self.progress.setValue(int(100 * (n - 1) / max(1, total)))
        elif kind == "evaluation-cluster":
            link, workers = payload
            self.status.setText(f"Connected: {workers} Dask worker(s)")
            self.dashboard.setText(f"Dask dashboard: <a href='{html.escape(link)}'>{html.escape(link)}</a>")
        elif kind == "evaluation-count":
            done, failed, of = payload
            self.status.setText(f"{done} of {of} images done, {failed} failed (on the cluster)")
            self.progress.setValue(int(100 * (done + failed) / max(1, of)))
        elif kind == "evaluation":
            self._show(payload)
        elif kind == "evaluation-refused":
            self.status.setText(f"Not started: {payload}")

    def _on_progress(self, job: Job, step: str, fraction: float) -> None:
        if job is self.job:
            self.progress.setFormat(f"{step} %p%")

    def _on_finished(self, job: Job, outcome: str) -> None:
        if job is not self.job:
            return
        if outcome == "cancelled":
            self.status.setText("Cancelled; the images done are kept: tick Resume to go on")
        elif outcome.startswith("failed"):
            self.status.setText(f"The evaluation stopped: {outcome.removeprefix('failed: ')}")

    def _show(self, outcome: EvaluationOutcome) -> None:
        self.outcome = outcome
        self.progress.setValue(100)
        self.table.setRowCount(len(outcome.summary))
        for r, row in enumerate(outcome.summary):
            for c, key in enumerate(_SHOWN):
                value = row[key]
                text = f"{value:.3f}" if isinstance(value, float) else printable(value)  # labels: files' text
                self.table.setItem(r, c, QTableWidgetItem(text))
        problems = f"; {len(outcome.problems)} problem(s) in problems.csv" if outcome.problems else ""
        self.status.setText(f"{outcome.images} images evaluated{problems}")
        self.report_button.setEnabled(outcome.report is not None)
        if outcome.report is not None and self.open_report_when_done:
            self.open_report()

    def open_report(self) -> None:
        if self.outcome is not None and self.outcome.report is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.outcome.report)))
