"""A chest PNG on a fresh settings folder: the window explains it with the chest model, not the
head-CT model a first start used to keep; a picture it cannot place asks once, in the model panel,
and the answer is remembered between runs."""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QComboBox, QFrame, QPushButton

from tests.ui.helpers import open_and_wait
from viewer.state.runner import InlineRunner
from viewer.state.session import ViewerSession
from viewer.ui.settings import restore_session, save_session


def _png(path, size: int):
    rng = np.random.default_rng(1)
    PILImage.fromarray((rng.random((size, size)) * 200 + 20).astype(np.uint8)).save(path)
    return path


def test_a_chest_png_gets_the_chest_model_and_the_panel_says_what_was_assumed(qtbot, window, tmp_path):
    window.session.choose_model("ct_resnet18")
    open_and_wait(qtbot, window, [_png(tmp_path / "00000001_000.png", 1024)])
    assert window.model_panel.models.currentText() == "cxr_resnet18"
    caution = window.model_panel.caution
    assert caution.isVisible() and "taken for a radiograph" in caution.text()
    assert not window.findChild(QFrame, "model_question").isVisible()


def test_a_picture_it_cannot_place_asks_once_and_the_answer_is_kept(qtbot, window, settings, tmp_path):
    window.session.choose_model("ct_resnet18")
    open_and_wait(qtbot, window, [_png(tmp_path / "export.png", 600)])
    bar = window.findChild(QFrame, "model_question")
    qtbot.waitUntil(bar.isVisible)
    assert "PNG says nothing of its modality" in bar.text.text()
    assert window.model_panel.models.currentText() == "cxr_resnet18"  # meanwhile
    models = bar.findChild(QComboBox, "question_models")
    assert models.currentData() == "cxr_resnet18" and models.findData("ct_resnet18") >= 0
    models.setCurrentIndex(models.findData("ct_resnet18"))
    with qtbot.waitSignal(window.session.model.predicted, check_params_cb=lambda p: p is not None):
        qtbot.mouseClick(bar.findChild(QPushButton, "question_use"), Qt.MouseButton.LeftButton)
    assert not bar.isVisible() and window.model_panel.models.currentText() == "ct_resnet18"
    save_session(settings, window.session)
    again = QSettings(settings.fileName(), QSettings.Format.IniFormat)
    fresh = ViewerSession(InlineRunner())
    restore_session(again, fresh)
    assert fresh.model.chooser.raster_model == "ct_resnet18"
