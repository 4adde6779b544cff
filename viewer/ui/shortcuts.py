"""The keyboard and mouse help dialog, generated from the window's own actions."""

from __future__ import annotations

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

MOUSE = (
    ("Left drag", "Window: horizontal = width, vertical = level (preference: mouse/left)"),
    ("Middle drag", "Pan"),
    ("Right drag", "Zoom"),
    ("Wheel", "Next / previous slice"),
    ("Ctrl + wheel", "Zoom around the cursor"),
    ("Left drag with a drawing tool", "Draw a rectangle, ellipse or freehand outline"),
    ("Drop files, folders or ZIPs", "Open them"),
)


class ShortcutsDialog(QDialog):
    def __init__(self, window):
        super().__init__(window)
        self.setWindowTitle("Keyboard and mouse")
        rows = list(MOUSE)
        seen = set()
        for action in window.actions():
            key = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            text = action.text().replace("&", "")
            if key and (key, text) not in seen:
                seen.add((key, text))
                rows.append((key, text))
        table = QTableWidget(len(rows), 2, self)
        table.setObjectName("shortcuts_table")
        table.setHorizontalHeaderLabels(["Key or gesture", "Action"])
        table.verticalHeader().hide()
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        for row, (key, text) in enumerate(rows):
            table.setItem(row, 0, QTableWidgetItem(key))
            table.setItem(row, 1, QTableWidgetItem(text))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(table)
        layout.addWidget(buttons)
        self.resize(560, 640)
