"""A detector in the main window (offscreen): the box its maps explain is the one clicked (else the
target's best box), drawn in white, named in the panel, and a radiologist's box can be chosen
instead. Each map is checked against the engine's own map of that box (``explain(boxes=...)``):
a seeded torchvision Faster R-CNN on the bundled chest film, nothing downloaded."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest
from safetensors.torch import save_file

from tests.explain.detectors import LAYER, detector
from tests.state.test_model_outputs import CHEST, CHEST_TRUTH
from tests.ui.helpers import run_and_wait, show_model_outputs
from viewer.explain.engine import explain
from viewer.ui.model_output_items import REGION_COLOUR, OutputsPanel

pytestmark = pytest.mark.timeout(600)
LABELS = ("nodule", "consolidation")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """A seeded detector of ``LABELS``; a low threshold, so that many boxes are shown."""
    folder = tmp_path_factory.mktemp("detector")
    network = detector(labels=len(LABELS))
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, folder / "w.safetensors")
    (folder / "manifest.toml").write_text(
        'name = "chest detector"\ntask = "detection"\nlabels = ["nodule", "consolidation"]\n'
        '[network]\narch = "fasterrcnn_mobilenet_v3_large_320_fpn"\nweights = "w.safetensors"\n'
        f'in_channels = 3\ntarget_layer = "{LAYER}"\n[input]\nsize = [128, 128]\n'
        "[detection]\nscore_threshold = 0.3\n"
    )
    return folder / "manifest.toml"


@pytest.fixture
def boxed(qtbot, window, manifest):
    """The main window with the detector's boxes of the chest sample on screen."""
    session = window.session
    show_model_outputs(
        qtbot, window, CHEST, manifest, lambda: session.outputs.boxes() is not None, ["gradcam"]
    )
    return session, window, window.outputs_view


def _engine_map(session, manifest, method: str, label: str, box) -> np.ndarray:
    model = session.model.store.get(manifest)
    result = explain(
        model, session.state.image, [method], targets=[label], frames=[0], boxes=[(label, list(box))]
    )
    assert len(result.maps) == 1
    return result.maps[0].frame(0)


def _shown_map(session, method: str = "gradcam") -> np.ndarray:
    layer = session.state.layer(method)
    assert layer is not None
    return layer.values(session.state.frame)


def _clickable_other_box(outputs):
    """A shown box that is not its label's best, whose centre lies in no smaller box: a click
    there chooses it. Returns ``(index, centre x, centre y)``."""
    boxes = outputs.boxes()
    b = boxes.boxes
    areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    best = {label: boxes.labels.index(label) for label in dict.fromkeys(boxes.labels)}  # highest first
    for i in np.argsort(areas):
        x, y = (b[i, 0] + b[i, 2]) / 2, (b[i, 1] + b[i, 3]) / 2
        inside = (b[:, 0] <= x) & (x <= b[:, 2]) & (b[:, 1] <= y) & (y <= b[:, 3])
        if best[boxes.labels[i]] != i and not (inside & (areas < areas[i])).any():
            return int(i), float(x), float(y)
    raise AssertionError("no box to click")


def test_by_default_the_maps_explain_the_targets_best_box_drawn_in_white(qtbot, boxed, manifest):
    session, window, view = boxed
    outputs, target = session.outputs, session.state.target
    boxes = outputs.boxes()
    best = boxes.labels.index(target)  # the boxes come highest score first
    explained = outputs.explained_box()
    assert explained.label == target and np.array_equal(explained.box, boxes.boxes[best])
    assert session.explanation.boxes() == [(target, [float(v) for v in boxes.boxes[best]])]
    assert view.boxes.texts[-1].toPlainText() == f"{target} {boxes.scores[best]:.2f}"
    assert view.boxes.rects[-1][1].color().name() == REGION_COLOUR  # on top, in white
    assert f"the best {target} box" in view.panel.region.text()

    run_and_wait(qtbot, window, ["gradcam"])
    expected = _engine_map(session, manifest, "gradcam", target, boxes.boxes[best])
    np.testing.assert_allclose(_shown_map(session), expected, atol=1e-5)


def test_a_shift_click_on_a_box_explains_that_box(qtbot, boxed, manifest):
    session, window, view = boxed
    outputs = session.outputs
    i, x, y = _clickable_other_box(outputs)
    boxes = outputs.boxes()
    label, box = boxes.labels[i], boxes.boxes[i].copy()
    where = window.canvas.mapFromScene(window.canvas.vb.mapViewToScene(QPointF(x, y)))

    with qtbot.waitSignal(window.maps_shown, timeout=300_000):
        QTest.mouseClick(
            window.canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, where
        )

    assert outputs.box.label == label and np.allclose(outputs.box.box, box, atol=0.5)
    assert session.state.target == label
    assert f"the {label} box {boxes.scores[i]:.2f}" in view.panel.region.text()
    clicked = _engine_map(session, manifest, "gradcam", label, outputs.box.box)
    np.testing.assert_allclose(_shown_map(session), clicked, atol=1e-5)
    best = _engine_map(session, manifest, "gradcam", label, boxes.boxes[boxes.labels.index(label)])
    assert not np.allclose(clicked, best, atol=1e-3)  # another box: another map


def test_a_radiologists_box_can_be_the_target_and_repeated_clicks_go_round_them(qtbot, boxed, manifest):
    session, window, view = boxed
    outputs = session.outputs
    session.explanation.methods = ["gradient"]
    window.model_panel.set_checked_methods(["gradient"])
    assert session.annotation.load(CHEST_TRUTH)
    session.state.target = "nodule"
    truth = outputs.annotation_boxes("nodule")
    assert truth, "the sample marks a nodule"
    mask = session.state.annotation.mask(session.state.image, "nodule", session.model.matcher)[0]
    ys, xs = np.nonzero(mask)
    assert np.array_equal(truth[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])

    with qtbot.waitSignal(window.maps_shown, timeout=300_000):
        QTest.mouseClick(view.panel.annotated, Qt.MouseButton.LeftButton)
    chosen = outputs.box
    assert chosen.score is None and np.array_equal(chosen.box, truth[0])
    assert session.explanation.boxes() == [("nodule", [float(v) for v in truth[0]])]
    assert view.boxes.texts[-1].toPlainText() == "nodule (radiologist)"
    assert "radiologist's nodule box 1 of" in view.panel.region.text()
    expected = _engine_map(session, manifest, "gradient", "nodule", truth[0])
    np.testing.assert_allclose(_shown_map(session, "gradient"), expected, atol=1e-5)

    # A second nodule drawn: the button now goes to it, then back to the first.
    drawn = np.zeros_like(mask)
    drawn[40:60, 50:90] = True
    session.state.annotation.regions.append(session.annotation.drawn_region(drawn))
    session.explanation.methods = []  # choosing is checked here, the map above
    every = outputs.annotation_boxes("nodule")
    assert len(every) == len(truth) + 1 and np.array_equal(every[-1], [50, 40, 90, 60])
    for k in [*range(1, len(every)), 0]:
        assert np.array_equal(outputs.use_annotation_box().box, every[k])


def test_a_detector_shows_its_box_tools_and_hides_the_mask_ones(qtbot, boxed):
    session, _window, view = boxed
    qtbot.waitUntil(lambda: view.panel.pick.isVisible())
    panel = view.panel
    assert panel.pick.text() == "Pick box" and not panel.annotated.isHidden()
    assert panel.drawn.isHidden() and panel.whole.isHidden() and panel.list.isHidden()
    assert panel.form.isRowVisible(panel.threshold) and not panel.form.isRowVisible(panel.style)
    assert panel.hint.isHidden()
    # In a tall dock the rows close up where the mask controls went: the list's room goes below.
    tall = OutputsPanel(session)
    qtbot.addWidget(tall)
    tall.resize(300, 600)
    tall.show()
    qtbot.waitExposed(tall)
    gap = tall.pick.geometry().top() - tall.threshold.geometry().bottom()
    assert gap <= 3 * tall.layout().spacing() + 12, gap
    # In a short one the words of what the maps explain are all there (not clipped top and bottom).
    tall.resize(300, tall.minimumSizeHint().height())
    qtbot.wait(20)
    assert tall.region.text() and tall.region.height() >= tall.region.heightForWidth(tall.region.width())
