"""Studies and series found in what the user opened, with thumbnails."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QWidget

from viewer.io.discovery import SeriesInfo
from viewer.io.safe_text import printable
from viewer.state.tasks import THUMBNAIL_SIZE
from viewer.ui.pictures import to_qimage


def describe(series: SeriesInfo) -> str:
    """The entry's text: modality, description, size and study, each header field printable."""
    ident = series.identity
    count = series.n_frames
    title = ident.series_description or ident.study_description or series.describe()
    lines = [
        printable(f"{ident.modality or series.kind.upper()}  {title}"),
        f"{count} image{'s' if count != 1 else ''}  {series.rows} x {series.columns}",
    ]
    study = " ".join(p for p in (ident.study_date, ident.study_description) if p)
    if study:
        lines.append(printable(study))
    return "\n".join(lines)


class StudyBrowser(QListWidget):
    """One entry per series (patient and study in the tooltip); activating one opens it."""

    series_chosen = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("study_browser")
        self.setIconSize(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        self.setSpacing(2)
        self.setWordWrap(True)
        # A thumbnail and a readable line beside it, however wide the comparison panel grows.
        self.setMinimumWidth(THUMBNAIL_SIZE + self.fontMetrics().horizontalAdvance("1024 x 1024 CT") + 24)
        self.series: list[SeriesInfo] = []
        self.itemActivated.connect(lambda item: self.series_chosen.emit(self.row(item)))
        self.itemClicked.connect(lambda item: self.series_chosen.emit(self.row(item)))

    def set_series(self, series: list[SeriesInfo]) -> None:
        """Show ``series``; when they extend those shown (series arriving from a PACS), only the
        new ones are added, so the thumbnails and the selection already there stay."""
        series = list(series)
        kept = len(self.series)
        extends = len(series) >= kept and all(a is b for a, b in zip(self.series, series, strict=False))
        if not (kept and extends):
            self.clear()
            kept = 0
        self.series = series
        placeholder = QPixmap(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        placeholder.fill(Qt.GlobalColor.black)
        for info in self.series[kept:]:
            item = QListWidgetItem(QIcon(placeholder), describe(info))
            ident = info.identity
            patient = " ".join(p for p in (ident.patient_name.replace("^", " "), ident.patient_id) if p)
            path = printable(info.paths[0])
            item.setToolTip(f"{printable(patient)}\n{path}" if patient else path)
            self.addItem(item)

    def set_thumbnails(self, batch: list[tuple[int, np.ndarray]]) -> None:
        """A batch of pictures, painted once."""
        self.setUpdatesEnabled(False)
        try:
            for index, picture in batch:
                self.set_thumbnail(index, picture)
        finally:
            self.setUpdatesEnabled(True)

    def set_thumbnail(self, index: int, picture: np.ndarray) -> None:
        if 0 <= index < self.count():
            self.item(index).setIcon(QIcon(QPixmap.fromImage(to_qimage(picture))))

    def mark_current(self, index: int) -> None:
        self.blockSignals(True)
        self.setCurrentRow(index)
        self.blockSignals(False)
