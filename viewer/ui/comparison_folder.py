"""The Compare tab's "Every annotated image": the maps of every opened image that the loaded
annotation names, scored in the background as ``saliency-viewer evaluate`` scores them, one row
per image, label and method, and the summary per label and method. A view of
:class:`~viewer.state.folder_scores.FolderScores`."""

from __future__ import annotations

import math

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from viewer.explain.evaluation import RADIOLOGISTS
from viewer.explain.metric_catalog import column_of, title_of_metric
from viewer.explain.registry import title_of
from viewer.io.safe_text import printable
from viewer.state.folder_scores import FolderScores
from viewer.state.session import ViewerSession

IMAGE_COLUMNS = (
    ("Image", "image"),
    ("Label", "label"),
    ("Method", "method"),
    ("p", "probability"),
    # evaluate's rows name these scores by its own columns; their titles are the catalogue's
    *(
        (title_of_metric(m), column_of(m, "evaluate"))
        for m in ("iou_otsu", "dice_otsu", "pointing_game_strict", "energy_inside", "auprc")
    ),
    ("Annotated as", "annotation_label"),
)
SUMMARY_COLUMNS = (
    ("Label", "label"),
    ("Method", "method"),
    ("Images", "n"),
    ("mIoU (95 % CI)", "miou"),
    ("Hit rate (95 % CI)", "hit_rate"),
    ("AUPRC", "auprc"),
    ("False-positive localizations", "false_positive_localizations"),
)


def _number(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _method(method: str) -> str:
    return "Radiologists" if method == RADIOLOGISTS else title_of(method)


def image_cells(row: dict) -> list[str]:
    """One per-image row as shown: a false-positive localization says so where its IoU would be."""
    cells = []
    for _title, key in IMAGE_COLUMNS:
        value = row.get(key)
        if key == "method":
            cells.append(_method(value))
        elif key == "hit":
            cells.append("" if value is None else ("hit" if value else "miss"))
        elif key == "iou" and row.get("false_positive"):
            cells.append("predicted, not annotated")
        elif key in ("image", "label", "annotation_label"):
            cells.append(printable(str(value or "")))  # names and labels are the files' text
        else:
            cells.append(_number(value))
    return cells


def summary_cells(row: dict) -> list[str]:
    cells = []
    for _title, key in SUMMARY_COLUMNS:
        value = row.get(key)
        if key == "method":
            cells.append(_method(value))
        elif key in ("miou", "hit_rate"):
            low, high = row.get(f"{key.split('_')[0]}_low"), row.get(f"{key.split('_')[0]}_high")
            interval = f" ({_number(low)}-{_number(high)})" if _number(low) and _number(high) else ""
            cells.append(_number(value) + interval)
        elif key == "label":
            cells.append(printable(str(value)))
        else:
            cells.append(_number(value))
    return cells


def _table(columns, name: str) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setObjectName(name)
    table.setHorizontalHeaderLabels([title for title, _ in columns])
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.verticalHeader().hide()
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    return table


class FolderScoresView(QWidget):
    """A button that scores every opened image an annotation names (Stop while it runs), its
    status, the rows per image and the summary."""

    def __init__(self, session: ViewerSession, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.model = FolderScores(session)
        self.button = QPushButton()
        self.button.setObjectName("compare_all")
        self.button.clicked.connect(self._on_button)
        self.status = QLabel()
        self.status.setObjectName("compare_all_status")
        self.status.setWordWrap(True)
        self.images = _table(IMAGE_COLUMNS, "compare_images")
        self.summary = _table(SUMMARY_COLUMNS, "compare_summary")
        top = QHBoxLayout()
        top.addWidget(self.button)
        top.addWidget(self.status, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.images)
        split.addWidget(self.summary)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        model = self.model
        model.rows_added.connect(self._add_rows)
        model.summarised.connect(self._show_summary)
        model.status_changed.connect(lambda text: self.status.setText(text))
        model.running_changed.connect(lambda _running: self.refresh_offer())
        session.opening.discovered.connect(lambda _found: self._clear())
        session.state.events.annotation.connect(lambda *_: self.refresh_offer())
        self.refresh_offer()

    def refresh_offer(self) -> None:
        """The button: how many opened images an annotation names, or Stop while scoring."""
        if self.model.running:
            self.button.setText("Stop")
            self.button.setEnabled(True)
            return
        n = len(self.model.named())
        self.button.setText(f"Score the {n} annotated image{'s' if n != 1 else ''}" if n else "Score")
        self.button.setToolTip(
            "Score the ticked methods' maps on every opened image the loaded annotation names, as "
            "'saliency-viewer evaluate' does: IoU, hit and energy per image and label, and the summary"
        )
        self.button.setEnabled(n > 0)
        if not self.model.status:  # nothing scored yet: what there is to score
            self.status.setText(
                f"{n} opened image{'s' if n != 1 else ''} annotated: score the ticked methods on each"
                if n
                else "Load an annotation file that names the opened images to score them all"
            )

    def start(self) -> bool:
        self.images.setRowCount(0)
        self.summary.setRowCount(0)
        return self.model.start()

    def _on_button(self) -> None:
        if self.model.running:
            self.model.cancel()
        else:
            self.start()

    def _clear(self) -> None:
        self.images.setRowCount(0)
        self.summary.setRowCount(0)
        self.refresh_offer()

    def _add_rows(self, _name: str, rows: list) -> None:
        for row in rows:
            r = self.images.rowCount()
            self.images.insertRow(r)
            for c, text in enumerate(image_cells(row)):
                self.images.setItem(r, c, QTableWidgetItem(text))

    def _show_summary(self, summary: list) -> None:
        self.summary.setRowCount(len(summary))
        for r, row in enumerate(summary):
            for c, text in enumerate(summary_cells(row)):
                self.summary.setItem(r, c, QTableWidgetItem(text))

    def image_rows(self) -> list[list[str]]:
        return _rows(self.images)

    def summary_rows(self) -> list[list[str]]:
        return _rows(self.summary)


def _rows(table: QTableWidget) -> list[list[str]]:
    return [
        [table.item(r, c).text() if table.item(r, c) else "" for c in range(table.columnCount())]
        for r in range(table.rowCount())
    ]
