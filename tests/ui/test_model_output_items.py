"""The model's outputs drawn in the window (offscreen): a segmenter's masks as a layer per label,
a Shift+click on the canvas explaining the component under it, boxes with their threshold, and the
masks' Dice/IoU in the panel. The widgets are the main window's own."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from scipy import ndimage

from tests.state.test_model_outputs import CHEST, CHEST_TRUTH, LABELS, write_segmenter
from tests.ui.helpers import open_and_wait, show_model_outputs
from viewer.inference.detection import Detections
from viewer.inference.model import Prediction
from viewer.ui.model_output_items import model_colour, outline_width
from viewer.ui.theme import apply_dark_theme


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_segmenter(tmp_path_factory.mktemp("segmenter"))


@pytest.fixture
def shown(qtbot, window, manifest):
    """The main window with the segmenter's prediction of the chest sample on screen."""
    session = window.session
    show_model_outputs(qtbot, window, CHEST, manifest, lambda: session.outputs.labels == LABELS, ["gradient"])
    return session, window.canvas, window.outputs_view


def _rows(panel) -> dict[str, bool]:
    items = [panel.list.item(i) for i in range(panel.list.count())]
    return {i.data(Qt.ItemDataRole.UserRole): i.checkState() == Qt.CheckState.Checked for i in items}


def _colours(rgba: np.ndarray) -> set[tuple[int, int, int]]:
    opaque = rgba[rgba[..., 3] == 255][:, :3]
    return {tuple(int(v) for v in c) for c in np.unique(opaque, axis=0)}


def _rgb(label: str) -> tuple[int, int, int]:
    return QColor(model_colour(LABELS, label)).getRgb()[:3]


def test_each_label_is_a_layer_that_ticks_on_and_off(shown):
    session, _canvas, view = shown
    assert _rows(view.panel) == dict.fromkeys(LABELS, True)
    drawn = [label for label in LABELS if session.outputs.mask(label).any()]
    assert _colours(view.masks.rgba) == {_rgb(label) for label in drawn}
    view.panel.list.item(0).setCheckState(Qt.CheckState.Unchecked)
    assert "background" in session.outputs.hidden
    assert _colours(view.masks.rgba) == {_rgb(label) for label in drawn if label != "background"}


def test_outlines_ring_the_masks_and_the_fill_style_tints_them(shown):
    session, _canvas, view = shown
    label = max(LABELS, key=lambda lab: session.outputs.mask(lab).sum())
    for other in LABELS:
        session.outputs.show(other, other == label)
    mask = session.outputs.mask(label)
    edge = mask & ~ndimage.binary_erosion(mask, iterations=outline_width(mask.shape), border_value=0)
    assert np.array_equal(view.masks.rgba[..., 3] == 255, edge)  # the outline: the border, nothing else
    view.panel.style.setCurrentText("fill")
    assert session.outputs.style == "fill"
    rgba = view.masks.rgba
    assert np.all(rgba[mask & ~edge] == (*_rgb(label), 100)) and not rgba[~mask].any()


def test_a_shift_click_on_the_canvas_explains_the_component_under_the_cursor(qtbot, shown):
    session, canvas, view = shown
    label = next(lab for lab in LABELS[1:] if session.outputs.mask(lab).any())
    session.state.target = label
    components, _ = ndimage.label(session.outputs.mask(label), structure=np.ones((3, 3)))
    biggest = int(np.argmax(np.bincount(components.ravel())[1:])) + 1
    rows, cols = np.nonzero(components == biggest)
    row, col = int(rows[len(rows) // 2]), int(cols[len(cols) // 2])
    scene = canvas.vb.mapViewToScene(QPointF(col + 0.5, row + 0.5))
    where = canvas.mapFromScene(scene)

    QTest.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, where)

    region = session.outputs.region
    assert region is not None and region.label == label
    assert region.mask[row, col] and np.array_equal(region.mask, components == biggest)
    assert "part of the model's" in view.panel.region.text()
    assert (view.masks.rgba[region.mask][:, :3] == 255).all(axis=1).any()  # the region's white outline
    qtbot.waitUntil(lambda: session.state.layer("gradient") is not None, timeout=120_000)


def test_a_plain_click_picks_nothing_unless_the_tool_is_on(qtbot, shown):
    session, canvas, view = shown
    label = next(lab for lab in LABELS[1:] if session.outputs.mask(lab).any())
    # The pixel deepest inside the mask: a click lands on a whole screen pixel, which at a zoom
    # below 1 may be the image pixel next to the one aimed at (the mask's first pixel is an edge).
    depth = ndimage.distance_transform_edt(session.outputs.mask(label))
    row, col = np.unravel_index(int(np.argmax(depth)), depth.shape)

    def click() -> None:  # where the pixel is now on screen, as a user aims at what they see
        where = canvas.mapFromScene(canvas.vb.mapViewToScene(QPointF(col + 0.5, row + 0.5)))
        QTest.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, where)

    click()
    assert session.outputs.region is None
    view.panel.pick.setChecked(True)
    qtbot.wait(50)
    click()
    assert session.outputs.region is not None
    session.cancel()


def test_the_panel_shows_the_masks_dice_and_iou_against_the_annotation(shown):
    session, _canvas, view = shown
    assert view.panel.agreement.text() == ""
    assert session.annotation.load(CHEST_TRUTH)
    text = view.panel.agreement.text()
    for a in session.outputs.agreement():
        assert f"{a.label}: Dice {a.dice:.2f}, IoU {a.iou:.2f}" in text
    assert "nodule" in text and "consolidation" in text


def test_boxes_above_the_threshold_are_drawn_and_a_click_makes_one_the_target(qtbot, shown):
    session, _canvas, view = shown
    image = session.state.image
    boxes = Detections(
        np.array([[100, 100, 300, 260], [500, 400, 700, 650], [120, 120, 200, 200]], np.float32),
        ("nodule", "consolidation", "nodule"),
        np.array([0.9, 0.7, 0.3], np.float32),
    )
    prediction = Prediction(
        ("nodule", "consolidation"), [0], np.zeros((1, 2)), np.array([[0.9, 0.7]]), [], detections=[boxes]
    )
    session.explanation.methods = []  # a click here chooses; what it explains is test_model_output_boxes'
    session.model.set_prediction(prediction)
    session.state.target = "nodule"
    assert view.panel.threshold.isEnabled() and session.outputs.labels == ()
    assert len(view.boxes.rects) == 2
    assert sorted(t.toPlainText() for t in view.boxes.texts) == ["consolidation 0.70", "nodule 0.90"]
    view.panel.threshold.setValue(0.2)
    assert len(view.boxes.rects) == 3
    assert view.click(150, 150)  # inside two boxes: the smaller is meant
    assert session.outputs.box.label == "nodule" and np.array_equal(session.outputs.box.box, boxes.boxes[2])
    assert session.state.target == "nodule"
    assert view.click(600, 500) and session.state.target == "consolidation"
    assert not view.click(image.columns - 2, 5)
    session.cancel()


def test_the_main_window_has_the_outputs_dock(window):
    assert "outputs" in window.docks and window.outputs_view.panel.list.count() == 0
    assert window.outputs_view.masks.scene() is window.canvas.scene()


def test_the_outputs_dock_shows_for_a_segmenter_and_hides_for_a_classifier(qtbot, window, shown):
    session = window.session
    dock = window.docks["outputs"]
    assert not dock.isHidden()  # the segmenter's masks came
    dock.close()  # the user closes it: a new prediction of the same model leaves it closed
    session.outputs.changed.emit()
    assert dock.isHidden()
    assert session.model.choose("cxr_resnet18")
    predicted = session.outputs
    qtbot.waitUntil(
        lambda: predicted.prediction is not None and predicted.prediction.masks is None, timeout=120_000
    )
    assert dock.isHidden()


def test_a_classifier_leaves_the_outputs_dock_hidden(qtbot, window):
    open_and_wait(qtbot, window, [CHEST])
    assert window.docks["outputs"].isHidden()


def _overlapping(session, labels=("nodule", "consolidation")) -> np.ndarray:
    """A sigmoid segmenter's answer, set by hand: a nodule inside a consolidation."""
    image = session.state.image
    masks = np.zeros((1, 2, image.rows, image.columns), bool)
    masks[0, 0, 300:340, 300:340] = True
    masks[0, 1, 250:450, 250:450] = True
    session.model.set_prediction(Prediction(labels, [0], np.zeros((1, 2)), np.ones((1, 2)), [], masks=masks))
    return masks[0]


def test_the_fill_style_keeps_the_outline_of_a_mask_inside_another(shown):
    session, _canvas, view = shown
    nodule, _ = _overlapping(session)
    view.panel.style.setCurrentText("fill")
    colour = QColor(model_colour(("nodule", "consolidation"), "nodule")).getRgb()[:3]
    edge = nodule & ~ndimage.binary_erosion(nodule, iterations=outline_width(nodule.shape), border_value=0)
    assert np.all(view.masks.rgba[edge] == (*colour, 255))  # not painted over by the consolidation's tint


def test_a_labels_box_colour_does_not_change_with_the_threshold(shown):
    session, _canvas, view = shown
    boxes = Detections(
        np.array([[100, 100, 300, 260], [500, 400, 700, 650]], np.float32),
        ("nodule", "consolidation"),
        np.array([0.4, 0.8], np.float32),
    )
    session.model.set_prediction(
        Prediction(
            ("nodule", "consolidation"), [0], np.zeros((1, 2)), np.ones((1, 2)), [], detections=[boxes]
        )
    )
    session.state.target = "nodule"  # the consolidation box is drawn in its own colour, not white

    def colour_of_consolidation():
        text = next(t for t in view.boxes.texts if t.toPlainText().startswith("consolidation"))
        return text.color.name()

    view.panel.threshold.setValue(0.3)
    both = colour_of_consolidation()
    view.panel.threshold.setValue(0.5)  # the nodule's box goes: the consolidation's stays as it was
    assert colour_of_consolidation() == both == model_colour(("nodule", "consolidation"), "consolidation")


def test_a_box_at_the_images_top_edge_has_its_label_inside(shown):
    session, _canvas, view = shown
    boxes = Detections(
        np.array([[100, 0, 300, 260], [500, 400, 700, 650]], np.float32),
        ("nodule", "consolidation"),
        np.array([0.9, 0.8], np.float32),
    )
    session.model.set_prediction(
        Prediction(
            ("nodule", "consolidation"), [0], np.zeros((1, 2)), np.ones((1, 2)), [], detections=[boxes]
        )
    )
    anchors = {t.toPlainText().split()[0]: tuple(t.anchor) for t in view.boxes.texts}
    assert anchors == {"nodule": (0.0, 0.0), "consolidation": (0.0, 1.0)}  # below the top edge; above
    for text in view.boxes.texts:
        top = text.mapRectToView(text.boundingRect()).top()
        assert top >= -0.5  # on the image, where the view shows it


def _mean_rgb(image) -> np.ndarray:
    image = image.convertToFormat(image.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes()).reshape(image.height(), -1)
    return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3).mean(axis=(0, 1))


def test_the_pick_tool_looks_on_when_it_is_on(qtbot, shown):
    """In the window's dark theme a checked Fusion button is a shade darker (about 10 levels):
    the tool must say "on" with the accent colour."""
    _session, _canvas, view = shown
    app, button = QApplication.instance(), view.panel.pick
    saved = app.style().name(), app.palette(), app.styleSheet()
    apply_dark_theme(app)
    try:
        off = _mean_rgb(button.grab().toImage())
        button.setChecked(True)
        on = _mean_rgb(button.grab().toImage())
    finally:
        button.setChecked(False)
        app.setStyle(saved[0])
        app.setPalette(saved[1])
        app.setStyleSheet(saved[2])
    assert np.abs(on - off).max() > 50


def test_the_buttons_stay_put_when_the_words_under_them_change(qtbot, shown):
    session, _canvas, view = shown
    panel = view.panel
    qtbot.waitUntil(lambda: panel.pick.isVisible())
    before = panel.pick.mapTo(panel, panel.pick.rect().topLeft())
    assert session.annotation.load(CHEST_TRUTH)  # the agreement rows come
    session.outputs.pick(*np.argwhere(session.outputs.mask(LABELS[1]) | session.outputs.mask(LABELS[2]))[0])
    session.cancel()
    qtbot.wait(50)
    assert panel.agreement.text() and "part of the model's" in panel.region.text()
    assert panel.pick.mapTo(panel, panel.pick.rect().topLeft()) == before
    below = (panel.region, panel.list, panel.agreement)  # what grows and shrinks is under the buttons
    assert all(panel.pick.geometry().bottom() < w.geometry().top() for w in below)


def test_each_kind_of_model_shows_its_own_controls(shown):
    session, _canvas, view = shown
    panel = view.panel
    assert not panel.list.isHidden() and panel.form.isRowVisible(panel.style)
    assert not panel.form.isRowVisible(panel.threshold) and panel.annotated.isHidden()
    assert panel.pick.text() == "Pick region" and panel.hint.isHidden()
    session.model.set_prediction(
        Prediction(("nodule", "consolidation"), [0], np.zeros((1, 2)), np.ones((1, 2)), [])
    )  # a classifier's answer: nothing to draw
    assert not panel.hint.isHidden() and panel.pick.isHidden() and panel.list.isHidden()
    assert (
        "segmenter" in panel.hint.text() and "probabilities" not in panel.hint.text()
    )  # no guess at the model
    assert not panel.form.isRowVisible(panel.style) and not panel.form.isRowVisible(panel.threshold)
