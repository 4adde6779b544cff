"""Tools > Evaluate folder...: the data-set evaluation from the GUI, in the background."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QAction

from viewer.cli import main


def test_evaluate_folder_runs_in_the_background_and_lists_the_summary(qtbot, window, tmp_path):
    assert (
        main(["phantom", "cxr", "--n", "3", "--size", "256", "--seed", "3", "--out", str(tmp_path / "set")])
        == 0
    )
    window.model_panel.set_checked_methods(["gradcam", "guided-backprop"])
    next(a for a in window.findChildren(QAction) if a.text() == "Evaluate folder...").trigger()
    dialog = window.models.evaluation
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


def _phantoms(folder) -> None:
    assert main(["phantom", "cxr", "--n", "3", "--size", "256", "--seed", "5", "--out", str(folder)]) == 0


@pytest.mark.cluster
def test_evaluate_folder_on_a_dask_scheduler_gives_the_in_process_summary(qtbot, window, tmp_path):
    distributed = pytest.importorskip("distributed")
    _phantoms(tmp_path / "set")
    assert window.model_panel.select_model("cxr_resnet18")  # the phantoms are chest films
    window.model_panel.set_checked_methods(["gradcam"])
    next(a for a in window.findChildren(QAction) if a.text() == "Evaluate folder...").trigger()
    dialog = window.models.evaluation
    here = tmp_path / "here"  # the same evaluation in one process, with the model the window uses
    args = ["evaluate", str(tmp_path / "set" / "dicom"), "--model", dialog.manifest, "--annotation",
            str(tmp_path / "set" / "annotations"), "--methods", "gradcam", "--bootstrap", "50"]  # fmt: skip
    assert main([*args, "--quiet", "--out", str(here)]) == 0
    dialog.open_report_when_done = False
    dialog.images.setText(str(tmp_path / "set" / "dicom"))
    dialog.annotations.setText(str(tmp_path / "set" / "annotations"))
    dialog.out.setText(str(tmp_path / "eval"))
    dialog.bootstrap.setValue(50)
    dialog.where.setCurrentIndex(2)
    assert dialog.scheduler.isVisibleTo(dialog) and not dialog.workers.isVisibleTo(dialog)
    assert dialog.start() is None and "scheduler's address" in dialog.status.text()
    counts = []
    dialog.runner.result.connect(
        lambda job, kind, payload: kind == "evaluation-count" and counts.append(payload)
    )
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
    ) as cluster:
        dialog.scheduler.setText(cluster.scheduler_address)
        assert dialog.start() is not None
        qtbot.waitUntil(lambda: dialog.outcome is not None, timeout=240_000)
    assert "Dask dashboard: <a href='http" in dialog.dashboard.text()
    assert counts[-1] == (3, 0, 3) and [c[0] for c in counts] == [1, 2, 3]
    assert dialog.outcome.images == 3 and any(row["n"] for row in dialog.outcome.summary)
    assert (tmp_path / "eval" / "summary.csv").read_text() == (here / "summary.csv").read_text()
    dialog.close()


def test_the_dask_choices_name_their_extra_where_dask_is_missing(qtbot, window, monkeypatch):
    import importlib.util

    from viewer.ui.evaluate_dialog import EvaluateDialog

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name, *a)
    )
    dialog = EvaluateDialog(window, window.runner, window.session.model.store, "cxr_resnet18", ["gradcam"])
    qtbot.addWidget(dialog)
    model = dialog.where.model()
    assert [model.item(i).isEnabled() for i in range(3)] == [True, False, False]
    assert "saliency-viewer[distributed]" in dialog.where.toolTip()
    assert dialog.cluster() is None
