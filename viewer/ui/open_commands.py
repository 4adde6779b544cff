"""The main window's File > Open commands: files, folders, recent items and study URLs (retrieved
from their PACS and opened as they arrive); what was opened is remembered in the settings."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMainWindow

from viewer.io.formats import file_patterns
from viewer.io.pacs import is_study_url
from viewer.ui import settings as saved


class OpenCommands:
    """Needs the window's ``session``, ``settings``, ``pacs_ui``, ``busy``, ``menus`` and
    ``last_folder``."""

    def __init__(self, window: QMainWindow) -> None:
        self.window = window

    def open_paths(self, paths: list[str | Path]):
        """The job that opens ``paths``; study URLs among them are retrieved from their PACS."""
        window = self.window
        paths = [str(p) for p in paths]
        urls = [p for p in paths if is_study_url(p)]
        paths = [p for p in paths if not is_study_url(p)]
        if urls:
            job = window.pacs_ui.open_urls(urls)
            if not paths:
                return job
        saved.remember_recent(window.settings, paths)
        self.refresh_recent()
        window.busy.setValue(0)
        window.busy.show()
        return window.session.open_paths(paths)

    def ask_files(self) -> None:
        window = self.window
        files, _ = QFileDialog.getOpenFileNames(window, "Open images", window.last_folder(), file_patterns())
        if files:
            self.open_paths(files)

    def ask_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Open folder", self.window.last_folder())
        if folder:
            self.open_paths([folder])

    def refresh_recent(self) -> None:
        """File > Open recent: the last opened files and folders, newest first."""
        menu = self.window.menus["recent"]
        menu.clear()
        for path in saved.recent(self.window.settings):
            menu.addAction(path).triggered.connect(lambda _=False, p=path: self.open_paths([p]))
        menu.setEnabled(not menu.isEmpty())
