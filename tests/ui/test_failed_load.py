"""A study that cannot be loaded, in the real window: nothing of the study before it stays on
screen, and the failure is listed in Problems with its reason, whose counts are the file's."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.ui.helpers import CHEST, open_and_wait, run_and_wait

ROWS = COLUMNS = 1024


@pytest.fixture
def studies(tmp_path):
    """A good film and a film whose uncompressed pixel data the file cuts short, each a study of
    its own; and how many of its values the broken file holds."""
    folder = tmp_path / "studies"
    folder.mkdir()
    (folder / "good.dcm").write_bytes(CHEST.read_bytes())
    ds = pydicom.dcmread(CHEST)
    ds.decompress()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = (generate_uid() for _ in range(3))
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    whole = tmp_path / "whole.dcm"
    ds.save_as(whole)
    data = whole.read_bytes()
    pixels_at = len(data) - ROWS * COLUMNS * 2  # the pixel data ends the file
    cut = pixels_at + 2 * 300_001  # 300,001 of the 1,048,576 values its header declares
    (folder / "broken.dcm").write_bytes(data[:cut])
    return folder, 300_001


def _row(window, name: str) -> int:
    return next(i for i in range(window.browser.count()) if name in window.browser.item(i).text())


def _wait_failed(qtbot, window, action) -> None:
    failed = lambda j, k, p: k == "failed"  # noqa: E731
    with qtbot.waitSignal(window.runner.result, timeout=60_000, check_params_cb=failed):
        action()


def test_a_study_that_fails_to_load_clears_the_view_and_is_listed_with_its_reason(qtbot, window, studies):
    folder, held = studies
    open_and_wait(qtbot, window, [folder / "good.dcm"])
    run_and_wait(qtbot, window, ["gradcam"])
    assert window.state.layers and window.model_panel.predictions.rowCount() > 0
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=60_000)
    # The broken film opened among others: chosen in the Studies panel.
    with qtbot.waitSignal(window.session.opening.discovered, timeout=60_000):
        window.open_paths([folder])
    qtbot.waitUntil(lambda: window.browser.count() == 2, timeout=60_000)
    broken = next(i for i in range(2) if "broken" in window.session.opening.discovery.series[i].paths[0])
    if window.session.opening.series_index != broken:
        qtbot.waitUntil(lambda: window.session.model.prediction is not None, timeout=60_000)
        run_and_wait(qtbot, window, ["gradcam"])
        _wait_failed(qtbot, window, lambda: window.browser.series_chosen.emit(broken))
    # Nothing of the film before stays: no image, layer, annotation or prediction.
    qtbot.waitUntil(lambda: window.state.image is None, timeout=10_000)
    assert not window.state.layers and window.state.annotation is None
    assert window.session.model.prediction is None and window.model_panel.predictions.rowCount() == 0
    assert window.canvas.base.image is None
    # Listed in Problems, with the reason, counted as the file holds them.
    listed = [(path, reason) for path, reason in window.problems.problems() if path.endswith("broken.dcm")]
    assert listed == [
        (
            str(folder / "broken.dcm"),
            f"pixel data truncated: the file holds {held:,} of the {ROWS * COLUMNS:,} values "
            "its header declares",
        )
    ]
    assert window.docks["problems"].isVisible()
    assert "Cannot open broken.dcm" in window.errors[-1]
    # Choosing it again tries again, and says so once.
    _wait_failed(qtbot, window, lambda: window.browser.series_chosen.emit(broken))
    assert len([p for p, _ in window.problems.problems() if p.endswith("broken.dcm")]) == 1
    # The good film opens after it as ever.
    good = 1 - broken
    loaded = lambda j, k, p: k == "loaded"  # noqa: E731
    with qtbot.waitSignal(window.runner.result, timeout=60_000, check_params_cb=loaded):
        window.browser.series_chosen.emit(good)
    assert window.state.image is not None


def test_opening_a_file_that_fails_clears_the_study_before_it(qtbot, window, studies):
    folder, _held = studies
    open_and_wait(qtbot, window, [CHEST])
    run_and_wait(qtbot, window, ["gradcam"])
    _wait_failed(qtbot, window, lambda: window.open_paths([folder / "broken.dcm"]))
    qtbot.waitUntil(lambda: window.state.image is None, timeout=10_000)
    assert not window.state.layers and window.session.model.prediction is None
    assert [p for p, _ in window.problems.problems()] == [str(folder / "broken.dcm")]
