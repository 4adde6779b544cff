"""Small things a user meets on the first day: Quit at the end of File, a getting-started page,
a preset key that says why it does nothing on a PNG, sliders that stay put."""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QTextBrowser

from tests.ui.helpers import CHEST, open_and_wait, run_and_wait


def test_quit_is_the_last_command_of_the_file_menu(window):
    texts = [a.text() for a in window.menus["file"].actions() if not a.isSeparator()]
    assert texts[-1] == "Quit"
    assert texts.index("Save measurements as DICOM SR...") < texts.index(
        "Show patient identifiers in exports"
    )


def test_help_has_a_getting_started_page(qtbot, window):
    window.actions_by_id["getting_started"].trigger()
    page = window.findChild(QDialog, "getting_started")
    qtbot.waitUntil(page.isVisible)
    text = page.findChild(QTextBrowser).toPlainText()
    assert "Open a study" in text and "not for diagnosis" in text and "Load annotation" in text


def test_a_preset_key_on_a_png_says_why_it_does_nothing(qtbot, window, tmp_path):
    path = tmp_path / "film.png"
    PILImage.fromarray((np.random.default_rng(0).random((1024, 1024)) * 255).astype(np.uint8)).save(path)
    open_and_wait(qtbot, window, [path])
    voi = window.state.voi
    window.activateWindow()
    qtbot.keyClick(window.canvas, Qt.Key.Key_3)
    qtbot.waitUntil(lambda: "No window preset" in window.statusBar().currentMessage())
    assert "W: the file's window" in window.statusBar().currentMessage() and window.state.voi == voi


def test_the_layer_sliders_stay_put_when_the_description_changes(qtbot, window):
    open_and_wait(qtbot, window, [CHEST])
    run_and_wait(qtbot, window, ["gradcam"])
    panel = window.layer_panel

    def top() -> int:
        qtbot.wait(50)
        return panel.opacity.mapTo(panel, panel.opacity.rect().topLeft()).y()

    before = top()
    smap = window.state.layer("gradcam").map_for(window.state.frame)
    smap.notes.append("a map's notes can run to three lines in this panel, " * 2)  # e.g. LIME's
    panel._pull()
    assert top() == before
