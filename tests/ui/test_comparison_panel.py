"""The comparison panel: linked small views, numbers from the metrics module, a sortable table."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ui.helpers import CHEST, CHEST_TRUTH, CT, open_and_wait, run_and_wait
from viewer.explain.comparison import score_map
from viewer.ui.comparison import COLUMNS


def _show_compare(qtbot, window):
    with qtbot.waitSignal(window.scores_shown, timeout=300_000):
        window.tabs.setCurrentIndex(1)


def test_maps_are_scored_against_the_annotation_like_the_metrics_module(qtbot, window):
    open_and_wait(qtbot, window, [CHEST])
    assert window.session.annotation.load(CHEST_TRUTH)
    methods = ["gradcam", "guided-backprop", "guided-gradcam"]
    run_and_wait(qtbot, window, methods)
    _show_compare(qtbot, window)
    panel = window.comparison
    assert list(panel.views) == ["__image__", *methods]
    assert (
        len(panel.views["gradcam"].annotation.outlines) == 2
    )  # both annotated findings outlined on every view
    rows = panel.table_rows()
    assert len(rows) == 3
    # The numbers are those of viewer.explain.comparison on the same map and mask.
    model = window.session.model.store.get(window.session.model.manifest_path)
    smap = window.state.layer("gradcam").map_for(0)
    mask = window.state.annotation.mask(window.state.image, window.state.target)[0]
    expected = score_map(model, window.state.image, smap, 0, mask=mask, steps=50)
    got = panel.compare.scores["gradcam"]
    assert got.iou_otsu == pytest.approx(expected.iou_otsu)
    assert got.energy_inside == pytest.approx(expected.energy_inside)
    assert got.deletion_auc == pytest.approx(expected.deletion_auc, abs=1e-6)
    assert got.pointing_game == expected.pointing_game
    assert "IoU" in panel.views["gradcam"].numbers.text()
    # Every map also has its agreement with the others.
    assert all(panel.compare.agreement[m] is not None for m in methods)
    # Sorting by a column orders rows by value.
    panel.table.sortByColumn(2, panel.table.horizontalHeader().sortIndicatorOrder().AscendingOrder)
    ious = [float(r[2]) for r in panel.table_rows()]
    assert ious == sorted(ious)
    # One zoom for all views.
    first, other = panel.views["__image__"].vb, panel.views["gradcam"].vb
    first.scaleBy((0.5, 0.5))
    np.testing.assert_allclose(other.viewRange(), first.viewRange(), rtol=1e-6)


def test_without_an_annotation_maps_are_compared_with_each_other(qtbot, window):
    open_and_wait(qtbot, window, [CT])
    run_and_wait(qtbot, window, ["gradcam", "gradcam++"])
    _show_compare(qtbot, window)
    panel = window.comparison
    assert "compared with each other" in panel.status.text()
    scores = panel.compare.scores["gradcam"]
    assert scores.iou_otsu is None and scores.deletion_auc is not None
    assert panel.compare.agreement["gradcam"] == pytest.approx(panel.compare.agreement["gradcam++"])
    # The panel follows the viewer's slice: a slice without maps empties it.
    frame = window.state.frame
    window.state.step_frame(1)
    assert list(panel.views) == ["__image__"]
    image = window.state.image
    assert np.array_equal(panel.views["__image__"].base.image, image.frame(frame + 1))


def test_deletion_and_insertion_the_blur_cannot_move_are_marked_flat(qtbot, window):
    # The heart's outline survives RISE's blur, so p(cardiomegaly) stays near 1 on the blurred film.
    open_and_wait(qtbot, window, [CHEST])
    window.state.target = "cardiomegaly"
    run_and_wait(qtbot, window, ["gradcam", "guided-gradcam"])
    _show_compare(qtbot, window)
    panel = window.comparison
    assert "cannot rank these maps" in panel.status.text()
    assert all(scores.faithfulness_uninformative for scores in panel.compare.scores.values())
    deletion = [name for name, _ in COLUMNS].index("Deletion AUC")
    assert all(row[deletion].endswith("(flat)") for row in panel.table_rows())
    assert panel.views["gradcam"].numbers.text().endswith("(flat)")


def test_an_nih_box_file_counts_for_the_models_own_label(qtbot, window, tmp_path):
    """NIH writes "Cardiomegaly" and "Infiltrate"; the demo model says "cardiomegaly" and has no
    infiltration: the box counts for cardiomegaly, and the other label is reported by name."""
    open_and_wait(qtbot, window, [CHEST])
    boxes = tmp_path / "BBox_List_2017.csv"
    boxes.write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        f"{CHEST.stem}.png,Cardiomegaly,300.0,500.0,420.0,260.0,,,\n"
        f"{CHEST.stem}.png,Infiltrate,100.0,200.0,50.0,60.0,,,\n"
    )
    assert window.session.annotation.load(boxes)
    assert "Infiltrate match none of the model's labels" in window.errors[-1]
    assert window.problems.rowCount() >= 1
    window.state.target = "cardiomegaly"
    mask, _ = window.comparison.compare.masks()
    assert mask is not None and mask.sum() == 420 * 260
    window.state.target = "effusion"
    assert window.comparison.compare.masks()[0] is None
    assert "Infiltrate" in window.comparison.compare.no_annotation_text()
