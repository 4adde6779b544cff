"""Measuring on the real window: a drag with the length tool on the bundled head CT gives the
length in mm of the pixels it spans, an angle is a drag and a click, a region its statistics; all
are listed, drawn on their slice only, saved as a DICOM SR and loaded back."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt

from tests.ui.helpers import open_and_wait
from tests.ui.test_main_window import _drag
from viewer.io.drawn_shapes import rasterize
from viewer.resources import resource_path

HEAD_CT = resource_path("samples", "dicom", "ct_0001")


def _screen(window, x: float, y: float) -> QPoint:
    return window.canvas.mapFromScene(window.canvas.vb.mapViewToScene(QPointF(x, y)))


def _image_point(window, pos: QPoint) -> tuple[float, float]:
    """Where a screen pixel lands in the image (the drag's points are screen pixels)."""
    point = window.canvas.vb.mapSceneToView(window.canvas.mapToScene(pos))
    return point.x(), point.y()


def test_length_angle_and_region_measured_listed_saved_and_loaded(qtbot, window, tmp_path):
    image = open_and_wait(qtbot, window, [HEAD_CT])
    row_mm, col_mm = image.geometry.row_spacing, image.geometry.col_spacing
    book = window.measure.book
    qtbot.keyClick(window, Qt.Key.Key_D)  # Tools > Measure > Length
    assert window.canvas.vb.tool == "length"
    start, end = _screen(window, 100, 120), _screen(window, 300, 270)
    _drag(window.canvas, start, end)
    (length,) = book.items
    (x0, y0), (x1, y1) = _image_point(window, start), _image_point(window, end)
    assert length.length == pytest.approx(math.hypot((x1 - x0) * col_mm, (y1 - y0) * row_mm), rel=1e-6)
    assert length.length == pytest.approx(math.hypot(200 * col_mm, 150 * row_mm), rel=0.02)
    assert "Pixel Spacing" in length.spacing
    assert window.docks["measurements"].isVisible()
    assert window.measure.list.count() == 1 and "mm" in window.measure.list.item(0).text()

    # An angle: the first arm dragged to the vertex, the second arm's end clicked.
    window.measure.actions["angle"].trigger()
    _drag(window.canvas, _screen(window, 100, 300), _screen(window, 200, 300))
    qtbot.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=_screen(window, 200, 400))
    angle = book.items[-1]
    assert angle.measurement.kind == "angle" and angle.angle == pytest.approx(90, abs=2)

    # An ellipse region: its statistics are those of the pixels inside.
    window.measure.actions["roi-ellipse"].trigger()
    assert window.canvas.vb.tool == "roi-ellipse" and not window.annotations.tools["ellipse"].isChecked()
    _drag(window.canvas, _screen(window, 200, 200), _screen(window, 280, 260))
    roi = book.items[-1]
    mask = rasterize("ellipse", np.array(roi.measurement.points), image.rows, image.columns)
    assert roi.mean == pytest.approx(float(image.frame(window.state.frame)[mask].mean()))
    assert roi.units == "HU" and window.state.annotation is None  # a region measured, not annotated
    assert len(window.measure.drawn.items) == 2 * 3  # outline and value of each, on this slice
    window.state.step_frame(1)
    assert window.measure.drawn.items == []  # drawn on their own slice only
    window.state.step_frame(-1)

    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert window.canvas.vb.tool == "" and not any(a.isChecked() for a in window.measure.actions.values())
    out = window.measure.save(tmp_path / "measurements.dcm")
    assert out is not None and out.exists()
    book.clear()
    assert window.measure.list.count() == 0
    assert window.measure.load(out) == 3
    assert [m.measurement.kind for m in book.items] == ["length", "angle", "ellipse"]
    assert book.items[0].length == pytest.approx(length.length)
    assert window.measure.load(resource_path("samples", "dicom", "cxr_0001.dcm")) == 0
    assert "not a DICOM SR" in window.errors[-1]


def test_measuring_in_the_mpr_planes(qtbot, window, tmp_path):
    """A length dragged in the coronal plane is the patient distance between its ends, drawn in
    that plane only, listed as of the plane, and a double click on it goes back there; a region in
    the axial plane of an axial series is one of that acquired slice, shown in the single view too;
    the coronal length survives the SR round trip."""
    from tests.ui.test_mpr_view import _show_mpr

    open_and_wait(qtbot, window, [HEAD_CT])
    _show_mpr(qtbot, window)
    mpr, book = window.mpr, window.measure.book
    reformat = mpr.crosshair.reformat
    coronal = mpr.planes["coronal"]
    coronal.vb.setRange(xRange=(0, 512), yRange=(0, 28), padding=0)
    qtbot.keyClick(window, Qt.Key.Key_D)
    assert coronal.vb.tool == "length"

    def screen(plane, x, y) -> QPoint:
        where = mpr.graphics.mapFromScene(mpr.planes[plane].vb.mapViewToScene(QPointF(x, y)))
        return QPoint(round(where.x()), round(where.y()))

    start, end = screen("coronal", 100, 4), screen("coronal", 400, 20)
    _drag(mpr.graphics, start, end)
    (length,) = book.items
    m = length.measurement
    index = mpr.crosshair.plane_index("coronal")
    assert (m.plane, m.frame) == ("coronal", index)
    ends = reformat.plane_to_patient("coronal", index, np.array(m.points))
    assert length.length == pytest.approx(float(np.linalg.norm(ends[1] - ends[0])), rel=1e-6)
    row_mm, col_mm = reformat.plane_spacing("coronal")
    assert length.length == pytest.approx(math.hypot(300 * col_mm, 16 * row_mm), rel=0.05)
    drawn_in = {plane: len(items.items) for plane, items in mpr.measured.items()}
    assert drawn_in == {"axial": 0, "coronal": 2, "sagittal": 0}  # outline and value
    assert "coronal plane" in window.measure.list.item(0).text()

    # A rectangle in the axial plane: the acquired slice on screen, so the single view has it too.
    window.measure.actions["roi-rectangle"].trigger()
    axial = mpr.planes["axial"]
    axial.vb.setRange(xRange=(0, 512), yRange=(0, 512), padding=0)
    _drag(mpr.graphics, screen("axial", 200, 200), screen("axial", 300, 260))
    region = book.items[-1]
    assert region.measurement.plane == "" and region.measurement.frame == window.state.frame
    assert region in book.on_frame(window.state.frame)

    # Elsewhere, then back to the coronal length by the list.
    mpr.crosshair.scroll("coronal", 30)
    assert mpr.crosshair.plane_index("coronal") != index
    window.measure._go_to(0)
    assert mpr.crosshair.plane_index("coronal") == index
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert coronal.vb.tool == ""
    out = window.measure.save(tmp_path / "mpr.dcm")
    book.clear()
    assert window.measure.load(out) == 2
    assert book.items[0].measurement.plane == "coronal"
    assert book.items[0].length == pytest.approx(length.length, rel=1e-6)
