"""A non-modal list of files that could not be opened, each with the reason."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from viewer.io.errors import Problem
from viewer.io.safe_text import printable


class ProblemsPanel(QTableWidget):
    count_changed = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, 2, parent)
        self.setObjectName("problems")
        self.setHorizontalHeaderLabels(["File", "Reason"])
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.verticalHeader().hide()
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.setSortingEnabled(True)

    def add(self, problems: list[Problem]) -> None:
        """List ``problems``; one already listed (a study that failed again) is not repeated."""
        listed = set(self.problems())
        self.setSortingEnabled(False)
        for problem in problems:
            if (printable(problem.path), printable(problem.reason)) in listed:
                continue
            listed.add((printable(problem.path), printable(problem.reason)))
            row = self.rowCount()
            self.insertRow(row)
            # A file's name and a reason quoting its header are the file's text: shown printable.
            self.setItem(row, 0, QTableWidgetItem(printable(problem.path)))
            reason = QTableWidgetItem(printable(problem.reason))
            reason.setToolTip(printable(problem.reason))
            self.setItem(row, 1, reason)
        self.setSortingEnabled(True)
        self.count_changed.emit(self.rowCount())

    def clear_problems(self) -> None:
        self.setRowCount(0)
        self.count_changed.emit(0)

    def problems(self) -> list[tuple[str, str]]:
        return [(self.item(r, 0).text(), self.item(r, 1).text()) for r in range(self.rowCount())]
