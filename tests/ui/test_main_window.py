"""The real main window, driven as a user would: drop files, drag, scroll, run, toggle, export."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QAction, QDropEvent, QMouseEvent, QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from tests.ui.helpers import CHEST, CHEST_TRUTH, CT, CT_TRUTH, FAST_METHODS, open_and_wait, run_and_wait
from viewer.ui import exports


def _drop(window, paths) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(
        QPointF(200, 200),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)


def _drag(widget, start: QPoint, end: QPoint, button=Qt.MouseButton.LeftButton, steps: int = 8) -> None:
    """Press, move with the button held, release: real mouse events to the view's viewport."""
    viewport = widget.viewport()
    glob = viewport.mapToGlobal

    def send(kind, pos, buttons):
        event = QMouseEvent(
            kind, QPointF(pos), QPointF(glob(pos)), button, buttons, Qt.KeyboardModifier.NoModifier
        )
        QApplication.sendEvent(viewport, event)

    send(QMouseEvent.Type.MouseButtonPress, start, button)
    for i in range(1, steps + 1):
        pos = start + (end - start) * (i / steps)
        send(QMouseEvent.Type.MouseMove, pos, button)
    send(QMouseEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)
    # pyqtgraph takes a press within the double-click interval of a release for a double click.
    QTest.qWait(QApplication.doubleClickInterval() + 50)


def _wheel(widget, steps: int, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    viewport = widget.viewport()
    pos = QPointF(viewport.rect().center())
    for _ in range(abs(steps)):
        delta = QPoint(0, -120 if steps > 0 else 120)
        event = QWheelEvent(
            pos,
            QPointF(viewport.mapToGlobal(pos.toPoint())),
            QPoint(),
            delta,
            Qt.MouseButton.NoButton,
            modifiers,
            Qt.ScrollPhase.NoScrollPhase,
            False,
        )
        QApplication.sendEvent(viewport, event)


def test_a_dropped_chest_film_opens_with_its_window_thumbnail_tags_and_predictions(qtbot, window):
    with qtbot.waitSignal(
        window.runner.result, timeout=60_000, check_params_cb=lambda j, k, p: k == "loaded"
    ):
        _drop(window, [CHEST])
    qtbot.waitUntil(lambda: window.session.model.prediction is not None, timeout=60_000)
    image = window.state.image
    assert (image.rows, image.columns) == (1024, 1024)
    assert window.canvas.base.image is not None
    assert window.browser.count() == 1
    qtbot.waitUntil(lambda: not window.browser.item(0).icon().isNull(), timeout=30_000)
    # The window is the file's own VOI, drawn by the image item's levels.
    assert window.state.voi == image.default_window
    assert window.canvas.base.levels is not None
    # Predictions: sorted, and the top one is the target.
    labels = [
        window.model_panel.predictions.item(r, 0).text()
        for r in range(window.model_panel.predictions.rowCount())
    ]
    p = window.session.model.prediction.probabilities[0]
    assert labels[0] == window.state.target == window.session.model.labels[int(np.argmax(p))]
    assert sorted(labels) == sorted(window.session.model.labels)
    # The DICOM tag browser shows this file's header, and its search filters it.
    assert window.tags.source.endswith("cxr_0002.dcm")
    window.tags.filter.setText("PhotometricInterpretation".lower()[:10])
    rows = window.tags.visible_rows()
    assert "Photometric Interpretation" in rows and len(rows) < 10
    assert not window.errors


def test_left_drag_changes_the_window_and_keys_choose_presets(qtbot, window):
    open_and_wait(qtbot, window, [CT])
    image = window.state.image
    assert image.n_frames == 28 and window.state.frame == 14  # a volume opens on its middle slice
    center0, width0 = window.state.window_values()
    rect = window.canvas.viewport().rect()
    _drag(window.canvas, rect.center(), rect.center() + QPoint(60, 0))  # right: wider
    center1, width1 = window.state.window_values()
    assert width1 > width0 and center1 == pytest.approx(center0)
    _drag(window.canvas, rect.center(), rect.center() + QPoint(0, -40))  # up: level rises (default)
    center2, width2 = window.state.window_values()
    assert center2 > center1 and width2 == pytest.approx(width1)
    low, high = window.canvas.base.levels
    assert (low + high) / 2 == pytest.approx(center2 - 0.5, abs=1e-3)  # LINEAR: c - 0.5 +- (w - 1)/2
    # Key 1 is the first CT preset (Brain 80/40); R resets to the file's window.
    window.setFocus()
    qtbot.keyClick(window, Qt.Key.Key_1)
    assert window.state.window_values() == (40.0, 80.0)
    assert "W 80  L 40  (Brain)" in window.canvas.corners.labels["bottom_right"].text()
    qtbot.keyClick(window, Qt.Key.Key_I)
    assert window.state.invert is True
    assert window.canvas.base.lut[0].tolist() == [255, 255, 255]
    qtbot.keyClick(window, Qt.Key.Key_R)
    assert window.state.voi == window.state.image.default_window or window.state.voi.source == "auto"
    assert window.state.invert is False


def test_wheel_scrolls_slices_and_ctrl_wheel_zooms(qtbot, window):
    open_and_wait(qtbot, window, [CT])
    frame = window.state.frame
    _wheel(window.canvas, 3)
    assert window.state.frame == frame + 3
    assert "Im 18/28" in window.canvas.corners.labels["bottom_left"].text()
    window.setFocus()
    qtbot.keyClick(window, Qt.Key.Key_Up)
    assert window.state.frame == frame + 2
    qtbot.keyClick(window, Qt.Key.Key_End)
    assert window.state.frame == 27
    zoom = window.canvas.zoom()
    _wheel(window.canvas, -3, Qt.KeyboardModifier.ControlModifier)
    assert window.canvas.zoom() > zoom * 1.1
    window.canvas.fit()
    assert window.canvas.zoom() == pytest.approx(zoom, rel=0.02)
    # Middle-drag pans, right-drag zooms.
    before = window.canvas.vb.viewRect()
    rect = window.canvas.viewport().rect()
    _drag(window.canvas, rect.center(), rect.center() + QPoint(50, 0), Qt.MouseButton.MiddleButton)
    assert window.canvas.vb.viewRect().center().x() < before.center().x()
    _drag(window.canvas, rect.center(), rect.center() + QPoint(0, 80), Qt.MouseButton.RightButton)
    assert window.canvas.vb.viewRect().width() != pytest.approx(before.width(), rel=0.01)


def test_methods_run_in_the_background_and_appear_as_layers(qtbot, window):
    open_and_wait(qtbot, window, [CHEST])
    target = window.state.target
    run_and_wait(qtbot, window, FAST_METHODS)
    assert [layer.method for layer in window.state.layers] == FAST_METHODS
    # "Only the selected layer" (default): the newest map is selected and alone on screen.
    assert window.state.active_layer == FAST_METHODS[-1]
    shown = [m for m, item in window.canvas.overlays.items() if item.isVisible()]
    assert shown == [FAST_METHODS[-1]]
    window.layer_panel.list.setCurrentRow(0)  # choosing another layer switches at once
    assert window.state.active_layer == FAST_METHODS[0]
    assert [m for m, item in window.canvas.overlays.items() if item.isVisible()] == [FAST_METHODS[0]]
    ticks = [window.layer_panel.list.item(r).checkState() == Qt.CheckState.Checked for r in range(5)]
    assert ticks == [True, False, False, False, False]  # the list shows what the canvas shows
    window.solo.setChecked(False)
    window.session.layers.toggle_all()  # H: all off, then all on
    window.session.layers.toggle_all()
    for layer in window.state.layers:
        item = window.canvas.overlays[layer.method]
        assert item.isVisible() and item.image.shape == (1024, 1024)
        assert layer.map_for(0).target == target
    # Cached: running again computes nothing.
    assert window.run_methods(FAST_METHODS) is None
    # Opacity is the graphics item's property; a threshold swaps the lookup table.
    layer = window.state.layer("gradcam")
    window.state.active_layer = "gradcam"
    window.layer_panel.opacity.setValue(0.3)
    assert layer.opacity == pytest.approx(0.3) and window.canvas.overlays[
        "gradcam"
    ].opacity() == pytest.approx(0.3)
    window.layer_panel.threshold.setValue((0.5, 0.9))
    assert (layer.low, layer.high) == pytest.approx((0.5, 0.9))
    assert window.canvas.overlays["gradcam"].lut[100, 3] == 0  # below the threshold: transparent
    # Unticking a layer in the list hides it.
    row = window.layer_panel._row_of("gradcam")
    window.layer_panel.list.item(row).setCheckState(Qt.CheckState.Unchecked)
    assert layer.visible is False and not window.canvas.overlays["gradcam"].isVisible()
    # The cursor readout gives the real value and the active map's value.
    window.canvas.cursor_moved.emit((500, 600))
    assert "x 600  y 500" in window.cursor_label.text()


def test_a_new_target_cancels_the_stale_job_and_shows_its_own_maps(qtbot, window):
    open_and_wait(qtbot, window, [CHEST])
    first = window.state.target
    job = window.run_methods(["lime"])  # long: it is cancelled by the new target
    other = next(label for label in window.session.model.labels if label != first)
    qtbot.waitUntil(lambda: window.runner.current("explain") is job and window.runner.busy, timeout=10_000)
    with qtbot.waitSignal(window.runner.finished, timeout=60_000, check_params_cb=lambda j, s: j is job):
        window.state.target = other
    assert job.cancelled
    assert not window.state.layers  # nothing of the old target leaks into the new one
    run_and_wait(qtbot, window, ["gradcam"])
    assert window.state.layer("gradcam").map_for(0).target == other
    # A layer's look is the method's, kept across targets.
    window.state.layer("gradcam").opacity = 0.33
    window.state.target = first
    run_and_wait(qtbot, window, ["gradcam"])
    assert window.state.layer("gradcam").map_for(0).target == first
    assert window.state.layer("gradcam").opacity == pytest.approx(0.33)


def test_annotation_load_draw_and_undo(qtbot, window):
    open_and_wait(qtbot, window, [CHEST])
    assert window.session.annotation.load(CHEST_TRUTH)
    assert set(window.state.annotation.labels) == {"cardiomegaly", "effusion"}
    assert len(window.canvas.annotation.outlines) == 2
    window.state.annotation_style = "fill"
    assert window.canvas.annotation.fill.image is not None
    window.state.show_annotation = False
    assert not window.canvas.annotation.outlines
    window.state.show_annotation = True
    # A CT annotation does not match this film: refused with a reason.
    assert not window.session.annotation.load(CT_TRUTH)
    assert "does not refer to this image" in window.errors[-1]
    # Draw a rectangle of the target label, then undo it.
    regions = len(window.state.annotation.regions)
    window.annotations.set_tool("rectangle")
    vb = window.canvas.vb
    start = window.canvas.mapFromScene(vb.mapViewToScene(QPointF(100, 100)))
    end = window.canvas.mapFromScene(vb.mapViewToScene(QPointF(300, 250)))
    _drag(window.canvas, start, end)
    assert len(window.state.annotation.regions) == regions + 1
    region = window.state.annotation.regions[-1]
    assert region.label == window.state.target
    ys, xs = np.nonzero(region.mask)
    assert abs(xs.min() - 100) <= 3 and abs(xs.max() - 300) <= 3 and abs(ys.min() - 100) <= 3
    assert window.state.voi == window.state.image.default_window  # drawing did not change the window
    window.annotations.undo.undo()
    assert len(window.state.annotation.regions) == regions


def test_exported_screenshots_show_the_map_where_it_is_high_and_hide_identifiers(qtbot, window, tmp_path):
    open_and_wait(qtbot, window, [CHEST])
    run_and_wait(qtbot, window, ["gradcam"])
    layer = window.state.layer("gradcam")
    layer.opacity, layer.colormap = 1.0, "jet"
    values = layer.values(0)
    native = exports.compose_native(window.export_context())
    high, low = values > 0.9, values < 0.05
    grey = exports.compose_native(window.export_context(), layers=[])
    # Where the map is high the pixel is coloured (jet's red end); where it is ~0 the image shows.
    coloured = native[high].astype(int)
    assert (coloured[:, 0] - coloured[:, 2]).mean() > 100
    assert np.abs(native[low].astype(int) - grey[low].astype(int)).max() <= 1
    path = exports.save_native(window.export_context(), tmp_path / "native.png")
    from PIL import Image

    saved = np.asarray(Image.open(path).convert("RGB"))
    assert saved.shape[1] == 1024 and saved.shape[0] > 1024  # plus the caption band
    assert np.abs(saved[:1024][high].astype(int) - coloured).mean() < 12
    # Hidden layer: no colour anywhere in the image area (JPEG would blur; PNG is exact).
    layer.visible = False
    hidden = exports.compose_native(window.export_context())
    assert np.array_equal(hidden, grey)
    with pytest.raises(FileExistsError):
        exports.save_native(window.export_context(), path)
    # The view export hides the patient's name unless asked.
    layer.visible = True
    assert "Phantom" in window.canvas.corners.labels["top_left"].text()
    texts = {}
    original = exports.corner_texts

    def spy(state, zoom, hide_phi=False):
        texts[hide_phi] = original(state, zoom, hide_phi=hide_phi)
        return texts[hide_phi]

    exports.corner_texts = spy
    try:
        exports.save_view(window.export_context(), tmp_path / "view.jpg")
    finally:
        exports.corner_texts = original
    assert "Phantom" not in texts[True]["top_left"]
    assert (tmp_path / "view.jpg").stat().st_size > 10_000
    assert "Grad-CAM | " in exports.caption(
        window.export_context()
    ) and "not for diagnosis" in exports.caption(window.export_context())
    sheet = exports.render_contact_sheet(window.export_context())
    assert sheet.width() >= 2 * 512


def test_settings_remember_recent_studies_and_user_models(qtbot, window, settings, tmp_path):
    import shutil

    from viewer.inference.catalog import bundled_models

    open_and_wait(qtbot, window, [CHEST])
    assert settings.value("recent", type=list)[0] == str(CHEST)
    source = bundled_models()["cxr_resnet18"].parent
    mine = tmp_path / "my_model"
    shutil.copytree(source, mine)
    text = (mine / "manifest.toml").read_text()
    text = re.sub(r'^name = ".*"$', 'name = "my_chest_model"', text, count=1, flags=re.M)
    (mine / "manifest.toml").write_text(text)
    assert window.session.model.add(mine / "manifest.toml")
    assert window.model_panel.models.currentText() == "my_chest_model"
    assert str((mine / "manifest.toml").resolve()) in settings.value("models/user", type=list)
    qtbot.waitUntil(lambda: window.session.model.prediction is not None, timeout=60_000)
    window.close()
    from viewer.ui.main_window import MainWindow

    again = MainWindow(settings)
    qtbot.addWidget(again)
    assert "my_chest_model" in [
        again.model_panel.models.itemText(i) for i in range(again.model_panel.models.count())
    ]
    assert again.menus["recent"].actions()[0].text() == str(CHEST)
    again.runner.shutdown()


def test_problems_panel_lists_bad_files_and_the_rest_still_opens(qtbot, window, tmp_path):
    import shutil

    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(CHEST, folder / "good.dcm")
    (folder / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage")
    open_and_wait(qtbot, window, [folder])
    assert window.state.image is not None
    problems = window.problems.problems()
    assert any(name.endswith("broken.dcm") and reason for name, reason in problems)
    assert window.docks["problems"].windowTitle() == f"Problems ({len(problems)})"


def test_a_zipped_folder_lists_every_series_and_the_browser_opens_them(qtbot, window, tmp_path):
    import zipfile

    from tests.ui.helpers import SAMPLES

    archive = tmp_path / "studies.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted((SAMPLES / "dicom").rglob("*.dcm")):
            z.write(path, path.relative_to(SAMPLES / "dicom"))
    made = []
    original = window.browser.set_thumbnail
    window.browser.set_thumbnail = lambda index, picture: (made.append(index), original(index, picture))
    with qtbot.waitSignal(
        window.runner.result, timeout=60_000, check_params_cb=lambda j, k, p: k == "loaded"
    ):
        _drop(window, [archive])
    assert window.browser.count() == 3
    texts = [window.browser.item(i).text() for i in range(3)]
    ct_row = next(i for i, t in enumerate(texts) if t.startswith("CT"))
    assert "28 images" in texts[ct_row]
    with qtbot.waitSignal(
        window.runner.result, timeout=60_000, check_params_cb=lambda j, k, p: k == "loaded"
    ):
        window.browser.series_chosen.emit(ct_row)
    assert window.state.image.n_frames == 28
    # Choosing a series while thumbnails are still being made does not stop them.
    qtbot.waitUntil(lambda: sorted(made) == [0, 1, 2], timeout=60_000)
    # A head CT switches to the model made for CT.
    qtbot.waitUntil(lambda: window.session.model.prediction is not None, timeout=60_000)
    assert window.model_panel.models.currentText() == "ct_resnet18"
    assert "any" in window.session.model.labels
    assert window.tags.source.startswith(str(archive) + "!/")


def test_mouse_preferences_remap_buttons_and_flip_the_level_drag(qtbot, window, settings):
    from viewer.ui.preferences import PreferencesDialog

    open_and_wait(qtbot, window, [CT])
    dialog = PreferencesDialog(window.bindings, settings, window)
    dialog.buttons["left"].setCurrentIndex(dialog.buttons["left"].findData("pan"))
    dialog.buttons["right"].setCurrentIndex(dialog.buttons["right"].findData("window"))
    dialog.level_up.setChecked(False)
    dialog.accept()
    assert settings.value("mouse/left") == "pan" and settings.value("mouse/level_up", type=bool) is False
    voi, view = window.state.voi, window.canvas.vb.viewRect()
    rect = window.canvas.viewport().rect()
    _drag(window.canvas, rect.center(), rect.center() + QPoint(60, 0))  # left now pans
    assert window.state.voi == voi and window.canvas.vb.viewRect().center().x() < view.center().x()
    center, _ = window.state.window_values()
    _drag(window.canvas, rect.center(), rect.center() + QPoint(0, -40), Qt.MouseButton.RightButton)
    assert window.state.window_values()[0] < center  # up now lowers the level (OHIF)


def test_clipboard_and_the_shortcuts_dialog(qtbot, window):
    from PySide6.QtGui import QGuiApplication

    from viewer.ui.shortcuts import ShortcutsDialog

    open_and_wait(qtbot, window, [CHEST])
    window.exporter.copy_view()
    copied = QGuiApplication.clipboard().image()
    assert copied.width() == window.canvas.width() and copied.height() > window.canvas.height()
    dialog = ShortcutsDialog(window)
    table = dialog.findChild(type(window.problems).__mro__[1], "shortcuts_table")
    rows = {table.item(r, 1).text(): table.item(r, 0).text() for r in range(table.rowCount())}
    assert rows["Run methods"] == "Ctrl+R" and rows["Comparison panel"] == "C"
    assert "Brain (W 80 / L 40)" not in rows  # a chest film has no CT presets
    assert any(key == "Left drag" for key in rows.values())


def test_a_phantom_model_on_a_real_film_says_so_and_its_exports_too(qtbot, window, testdata):
    open_and_wait(qtbot, window, [testdata("RG1_UNCR.dcm")])  # a real chest CR
    banner = window.model_panel.caution
    assert banner.isVisible() and "trained on synthetic phantoms only" in banner.text()
    assert "trained on synthetic phantoms only" in exports.caption(window.export_context())
    with qtbot.waitSignal(window.model_panel.card_requested):
        banner.linkActivated.emit("card")
    assert window.models.card.isVisible() and "Model card" in window.models.card.windowTitle()
    window.models.card.close()
    open_and_wait(qtbot, window, [CHEST])  # the product's own phantom: nothing to warn about
    assert not banner.isVisible() and "phantoms only" not in exports.caption(window.export_context())


def test_model_check_dialog_reports_on_the_image_on_screen(qtbot, window, testdata):
    open_and_wait(qtbot, window, [testdata("RG1_UNCR.dcm")])
    action = next(a for a in window.findChildren(QAction) if a.text() == "Check model...")
    action.trigger()
    dialog = window.models.doctor
    assert dialog.isVisible() and dialog.status.text().startswith("Checking")
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=60_000)
    text = dialog.text.toPlainText()
    assert dialog.report.ok and "OK: the viewer can use this model." in text
    assert f"{window.state.image.rows} x {window.state.image.columns}, 1 frame(s)" in text
    assert "trained on synthetic phantoms only" in text  # the real film on screen, not a sample
    assert dialog.status.text() == "The viewer can use this model."
    dialog.close()


def test_methods_a_cnn_cannot_have_are_greyed_out_with_the_reason(qtbot, window):
    open_and_wait(qtbot, window, [CHEST])
    methods = window.model_panel.methods
    items = {methods.item(i).data(Qt.ItemDataRole.UserRole): methods.item(i) for i in range(methods.count())}
    qtbot.waitUntil(
        lambda: not items["attention-rollout"].flags() & Qt.ItemFlag.ItemIsEnabled, timeout=30_000
    )
    assert "self-attention" in items["attention-rollout"].toolTip()
    assert items["gradcam"].flags() & Qt.ItemFlag.ItemIsEnabled
    items["attention-rollout"].setCheckState(Qt.CheckState.Checked)
    assert "attention-rollout" not in window.model_panel.checked_methods()


def test_opening_draws_the_base_image_once(qtbot, window):
    """The image event draws the new image; the frame and window events that follow it on open
    must not draw it again (a paint counter on the base item)."""
    calls = []
    original = window.canvas.base.setImage
    window.canvas.base.setImage = lambda *a, **k: (calls.append(1), original(*a, **k))[1]
    open_and_wait(qtbot, window, [CT])
    assert len(calls) == 1
    window.state.step_frame(1)  # a new slice is drawn
    assert len(calls) == 2


def test_scrolling_a_series_reads_no_header_while_the_tag_browser_is_hidden(qtbot, window):
    open_and_wait(qtbot, window, [CT])
    assert not window.docks["tags"].isVisible()
    reads = window.tags.reads
    for _ in range(5):
        window.state.step_frame(1)
    assert window.tags.reads == reads  # hidden: nothing read from disk
    assert window.tags.source == window.state.image.frames[window.state.frame].source
    window.view.focus_tags()  # shown: the slice on screen's header, read once
    assert window.tags.reads == reads + 1 and "Instance Number" in window.tags.visible_rows()


def test_every_menu_command_is_one_row_of_the_action_table(qtbot, window):
    from viewer.ui.actions import ACTIONS, CONDITIONS, resolve

    ids = [spec.id for spec in ACTIONS]
    assert len(ids) == len(set(ids)) and all(i.isidentifier() for i in ids)
    for spec in ACTIONS:
        assert not spec.handler or callable(resolve(window, spec.handler)), spec.id
        assert not spec.enabled or spec.enabled in CONDITIONS, spec.id
        assert window.actions_by_id[spec.id].text() == spec.text
    # Enabled when they can act: exports need an image, the contact sheet needs maps.
    assert not window.actions_by_id["export_native"].isEnabled()
    open_and_wait(qtbot, window, [CHEST])
    assert window.actions_by_id["export_native"].isEnabled()
    assert not window.actions_by_id["export_sheet"].isEnabled()
    run_and_wait(qtbot, window, ["gradcam"])
    assert window.actions_by_id["export_sheet"].isEnabled()
