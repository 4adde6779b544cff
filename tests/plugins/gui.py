"""Fixtures of the real main window, a plugin of the root conftest so that any test folder can
use them: ``settings`` (a settings file of the test's own) and ``window`` (a shown MainWindow)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def window(qtbot, settings):
    from viewer.ui.main_window import MainWindow

    win = MainWindow(settings)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.pacs_runner.shutdown()
    win.runner.shutdown()
