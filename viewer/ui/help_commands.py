"""The main window's Help and Preferences commands: dialogs that read the window's settings."""

from __future__ import annotations

from PySide6.QtWidgets import QMainWindow, QMessageBox

from viewer.ui.preferences import PreferencesDialog
from viewer.ui.shortcuts import ShortcutsDialog


class HelpCommands:
    """Needs the window's ``bindings``, ``settings`` and ``pacs_ui``."""

    def __init__(self, window: QMainWindow) -> None:
        self.window = window
        self.page = None  # the Getting started window, kept while it is open

    def preferences(self) -> None:
        window = self.window
        PreferencesDialog(
            window.bindings, window.settings, window, edit_nodes=window.pacs_ui.edit_nodes
        ).exec()

    def shortcuts(self) -> None:
        ShortcutsDialog(self.window).exec()

    def getting_started(self) -> None:
        from viewer.resources import resource_path
        from viewer.ui.model_card import show_markdown

        self.page = show_markdown(self.window, "Getting started", resource_path("help", "getting_started.md"))

    def about(self) -> None:
        from viewer import __version__

        QMessageBox.about(
            self.window,
            "Saliency Viewer",
            f"Saliency Viewer {__version__}\nSee where a CNN is looking, next to the radiologist's "
            "annotation.\nFor research and demonstration; not for clinical use.",
        )
