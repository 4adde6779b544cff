"""A dark theme for reading rooms: low-luminance greys, one accent colour, no pure white."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

_COLOURS = {
    QPalette.ColorRole.Window: "#1e1f22",
    QPalette.ColorRole.WindowText: "#d8d8d8",
    QPalette.ColorRole.Base: "#16171a",
    QPalette.ColorRole.AlternateBase: "#222428",
    QPalette.ColorRole.ToolTipBase: "#2b2d31",
    QPalette.ColorRole.ToolTipText: "#e0e0e0",
    QPalette.ColorRole.Text: "#d8d8d8",
    QPalette.ColorRole.Button: "#2b2d31",
    QPalette.ColorRole.ButtonText: "#d8d8d8",
    QPalette.ColorRole.BrightText: "#ff6b6b",
    QPalette.ColorRole.Highlight: "#2f6fb0",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#6aa9ff",
    QPalette.ColorRole.PlaceholderText: "#7a7a7a",
}


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle("Fusion")  # the same look on every platform, and it honours the palette
    palette = QPalette()
    for role, colour in _COLOURS.items():
        palette.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6b6b6b"))
    app.setPalette(palette)
    app.setStyleSheet(
        "QDockWidget::title { background: #26282c; padding: 4px; }"
        "QToolTip { border: 1px solid #3a3d42; }"
        "QProgressBar { border: 1px solid #3a3d42; border-radius: 2px; text-align: center; height: 14px; }"
        "QProgressBar::chunk { background: #2f6fb0; }"
    )
