"""Tools > Evaluate folder...: the data-set evaluation from the GUI, in the background."""

from __future__ import annotations

from PySide6.QtGui import QAction

from viewer.cli import main


def test_evaluate_folder_runs_in_the_background_and_lists_the_summary(qtbot, window, tmp_path):
    assert (
        main(["phantom", "cxr", "--n", "3", "--size", "256", "--seed", "3", "--out", str(tmp_path / "set")])
        == 0
    )
    window.model_panel.set_checked_methods(["gradcam", "guided-backprop"])
    next(a for a in window.findChildren(QAction) if a.text() == "Evaluate folder...").trigger()
    dialog = window._evaluate
    assert dialog.isVisible() and dialog.methods == ["gradcam", "guided-backprop"]
    dialog.open_report_when_done = False  # no browser in a test
    assert dialog.start() is None and "Choose the images" in dialog.status.text()
    dialog.images.setText(str(tmp_path / "set" / "dicom"))
    dialog.annotations.setText(str(tmp_path / "set" / "annotations"))
    dialog.out.setText(str(tmp_path / "eval"))
    dialog.bootstrap.setValue(50)
    assert dialog.start() is not None
    qtbot.waitUntil(lambda: dialog.outcome is not None, timeout=180_000)
    assert dialog.outcome.images == 3 and dialog.table.rowCount() == len(dialog.outcome.summary) > 0
    assert (tmp_path / "eval" / "summary.csv").is_file() and dialog.report_button.isEnabled()
    assert dialog.status.text().startswith("3 images evaluated")
    # Again into the same folder: refused by name unless resumed.
    dialog.start()
    qtbot.waitUntil(lambda: "exists; resume it" in dialog.status.text(), timeout=30_000)
    dialog.close()
