"""A real main window per test, with its own settings file and the bundled samples."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from viewer.resources import resources_root

SAMPLES = resources_root() / "samples"
CHEST = SAMPLES / "dicom" / "cxr_0002.dcm"  # cardiomegaly + effusion
CHEST_NODULE = SAMPLES / "dicom" / "cxr_0001.dcm"  # nodule + consolidation
CT = SAMPLES / "dicom" / "ct_0001"  # 28 slices, subdural + intraparenchymal
CHEST_TRUTH = SAMPLES / "annotations" / "cxr_0002.json"
CT_TRUTH = SAMPLES / "annotations" / "ct_0001.json"
FAST_METHODS = ["gradcam", "gradcam++", "guided-backprop", "guided-gradcam", "deconvnet"]


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


def open_and_wait(qtbot, window, paths, timeout=60_000):
    """Open paths and wait until the image is shown and the model has predicted."""
    with qtbot.waitSignal(
        window.runner.result, timeout=timeout, check_params_cb=lambda j, k, p: k == "loaded"
    ):
        window.open_paths([str(p) for p in paths])
    qtbot.waitUntil(lambda: window.session.prediction is not None, timeout=timeout)
    return window.state.image


def run_and_wait(qtbot, window, methods, timeout=300_000):
    with qtbot.waitSignal(window.maps_shown, timeout=timeout):
        window.run_methods(methods)
