"""An annotation file of a whole data set (NIH's BBox_List_2017.csv) in the real window: loaded
once and kept for every image it names, across image switches and openings, until unloaded;
offered when it lies beside the images; and Compare scores every opened image it names."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image as PILImage

from tests.ui.helpers import open_and_wait

FILMS = ("00000001_000", "00000002_000", "00000003_000")  # the third is in no box
BOXES = (
    "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
    "00000001_000.png,Cardiomegaly,60.0,120.0,100.0,60.0,,,\n"
    "00000002_000.png,Effusion,20.0,150.0,50.0,40.0,,,\n"
    "00000002_000.png,Infiltrate,150.0,40.0,30.0,30.0,,,\n"
)


@pytest.fixture
def films(tmp_path):
    """Three 256 x 256 PNG films, as NIH names them."""
    folder = tmp_path / "films"
    folder.mkdir()
    rng = np.random.default_rng(35)
    for name in FILMS:
        picture = rng.normal(120, 30, (256, 256)).clip(0, 255).astype(np.uint8)
        PILImage.fromarray(picture).save(folder / f"{name}.png")
    return folder


def _choose(qtbot, window, name: str) -> None:
    """Click the film ``name`` in the Studies panel and wait until it is on screen."""
    row = next(i for i in range(window.browser.count()) if name in window.browser.item(i).text())
    if row == window.session.opening.series_index:
        return
    loaded = lambda j, k, p: k == "loaded"  # noqa: E731
    with qtbot.waitSignal(window.runner.result, timeout=60_000, check_params_cb=loaded):
        window.browser.series_chosen.emit(row)
    assert window.state.image.frames[0].source.endswith(f"{name}.png")


def _boxes_on_screen(window) -> int:
    return len(window.canvas.annotation.outlines)


def test_an_annotation_file_is_kept_for_every_image_it_names_until_unloaded(qtbot, window, films, tmp_path):
    boxes = tmp_path / "BBox_List_2017.csv"
    boxes.write_text(BOXES)
    open_and_wait(qtbot, window, [films])
    _choose(qtbot, window, FILMS[0])
    assert window.session.annotation.load(boxes)  # Ctrl+L
    assert window.state.annotation.labels == ("Cardiomegaly",)
    assert _boxes_on_screen(window) == 1
    # The status names this image's labels, not every label of the file.
    said = window.statusBar().currentMessage()
    assert "Cardiomegaly on this image" in said and "Effusion" not in said and "Infiltrate" not in said

    # Another image: its own boxes, from the same file, without loading it again.
    _choose(qtbot, window, FILMS[1])
    assert set(window.state.annotation.labels) == {"Effusion", "Infiltrate"}
    assert _boxes_on_screen(window) == 2
    mask = window.state.annotation.mask(window.state.image, "Effusion")[0]
    assert mask.sum() == 50 * 40 and mask[150:190, 20:70].all()
    # An image the file does not name has no annotation, and the file stays loaded.
    _choose(qtbot, window, FILMS[2])
    assert window.state.annotation is None and _boxes_on_screen(window) == 0
    # A region drawn there stays with that image.
    window.annotations.set_tool("rectangle")
    window.canvas.vb.shape_finished.emit("rectangle", np.array([[10.0, 10.0], [60.0, 50.0]]))
    window.annotations.set_tool("")
    assert len(window.state.annotation.regions) == 1

    # Opening the folder again (or another) keeps the file.
    open_and_wait(qtbot, window, [films])
    _choose(qtbot, window, FILMS[0])
    assert window.state.annotation.labels == ("Cardiomegaly",) and _boxes_on_screen(window) == 1
    assert window.actions_by_id["unload_annotation"].isEnabled()

    # Unload: gone from every image; the drawn region stays on its own.
    window.actions_by_id["unload_annotation"].trigger()
    assert window.state.annotation is None and _boxes_on_screen(window) == 0
    assert not window.actions_by_id["unload_annotation"].isEnabled()
    _choose(qtbot, window, FILMS[1])
    assert window.state.annotation is None
    _choose(qtbot, window, FILMS[2])
    assert len(window.state.annotation.regions) == 1 and _boxes_on_screen(window) == 1


def test_a_box_csv_beside_the_films_is_offered_as_their_annotation_not_a_problem(qtbot, window, films):
    (films / "BBox_List_2017.csv").write_text(BOXES)
    (films / "notes.txt").write_text("not an image")
    open_and_wait(qtbot, window, [films])
    qtbot.waitUntil(lambda: window.state.annotation is not None, timeout=30_000)
    assert window.state.annotation.labels == ("Cardiomegaly",)
    listed = window.problems.problems()
    assert not any(path.endswith(".csv") for path, _ in listed), listed
    assert any(path.endswith("notes.txt") for path, _ in listed)
    assert [f.name for f in window.session.annotation.book.files] == ["BBox_List_2017.csv"]


def test_compare_scores_every_opened_image_the_annotation_names(qtbot, window, films):
    shutil.copy(films / f"{FILMS[0]}.png", films / "unrelated.png")
    (films / "BBox_List_2017.csv").write_text(BOXES)
    open_and_wait(qtbot, window, [films])
    qtbot.waitUntil(lambda: bool(window.session.annotation.book.files), timeout=30_000)
    window.session.explanation.methods = ["gradcam", "guided-backprop"]
    window.tabs.setCurrentIndex(1)
    folder = window.comparison.folder
    window.comparison.bottom_tabs.setCurrentWidget(folder)
    assert folder.button.isEnabled() and "2 annotated images" in folder.button.text()
    with qtbot.waitSignal(folder.model.running_changed, timeout=300_000, check_params_cb=lambda on: not on):
        qtbot.mouseClick(folder.button, qtbot_left())
    rows = folder.image_rows()
    scored = [r for r in rows if r[4] != "predicted, not annotated"]
    # One row per annotated label x method on each named image; the others are not scored.
    assert sorted({r[0] for r in rows}) == ["00000001_000", "00000002_000"]
    assert sorted((r[0], r[1], r[2]) for r in scored) == [
        ("00000001_000", "cardiomegaly", "Grad-CAM"),
        ("00000001_000", "cardiomegaly", "Guided Backprop"),
        ("00000002_000", "effusion", "Grad-CAM"),
        ("00000002_000", "effusion", "Guided Backprop"),
    ]
    assert all(r[9] in ("Cardiomegaly", "Effusion") for r in scored)
    # The numbers are the evaluation's (evaluate_one on the same image and annotation).
    from viewer.explain.study_scores import evaluate_one

    model = window.session.model.store.get(window.session.model.manifest_path)
    series = next(s for s in window.session.opening.discovery.series if FILMS[1] in s.paths[0])
    annotations = [f.for_series(series) for f in window.session.annotation.book.sources()]
    expected, _ = evaluate_one(
        model, series, FILMS[1], annotations, ["gradcam"], window.session.explanation.seed
    )
    row = next(r for r in expected if r["label"] == "effusion")
    got = next(r for r in folder.model.rows if r["image"] == FILMS[1] and r["method"] == "gradcam")
    assert got["label"] == "effusion" and got["iou"] == pytest.approx(row["iou"])
    # The summary: a row per label and method, over the images where the label is annotated.
    summary = {(r[0], r[1]): r for r in folder.summary_rows()}
    assert summary[("cardiomegaly", "Grad-CAM")][2] == "1"
    assert summary[("effusion", "Guided Backprop")][2] == "1"
    assert folder.status.text().startswith("Scored 2 images")
    assert folder.button.text().startswith("Score the 2")


def qtbot_left():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def test_compare_says_maps_are_being_computed_during_a_re_run(qtbot, window):
    from tests.ui.helpers import CHEST, run_and_wait

    open_and_wait(qtbot, window, [CHEST])
    run_and_wait(qtbot, window, ["gradcam", "gradcam++"])
    window.settings.setValue("compare/steps", 5)  # deletion / insertion: few steps, this is not about them
    with qtbot.waitSignal(window.scores_shown, timeout=300_000):
        window.tabs.setCurrentIndex(1)
    # Another target: its maps are not computed yet, so the panel has none to show.
    other = next(label for label in window.session.model.labels if label != window.state.target)
    said = []
    window.session.explanation.explaining.connect(
        lambda on: on and said.append(window.comparison.status.text())
    )
    window.session.explanation.methods = ["gradcam", "gradcam++"]  # what the re-run computes
    window.session.explanation.run_on_open = True
    with qtbot.waitSignal(window.maps_shown, timeout=300_000):
        window.state.target = other
    assert said and said[0].startswith("Computing") and "Run some methods" not in said[0]
    qtbot.waitUntil(lambda: "Run some methods" not in window.comparison.status.text(), timeout=60_000)
