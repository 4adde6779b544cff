"""The MPR layout on the real window: a click puts the crosshair on the voxel SimpleITK places at
the same patient point, a blob and its saliency map show where they are in every plane, the
layers' styles follow, and scrolling a 200 x 512 x 512 volume with a map never stalls the loop."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from PySide6.QtCore import QPoint, QPointF, Qt

from tests.ui import stalls
from tests.ui.helpers import open_and_wait
from viewer.explain.saliency_map import SaliencyMap
from viewer.io.image import FrameInfo, Geometry, Identity, Image, Window
from viewer.resources import resource_path

HEAD_CT = resource_path("samples", "dicom", "ct_0001")


def _click(qtbot, window, plane: str, row: float, col: float, modifier=Qt.KeyboardModifier.NoModifier):
    """A left click on ``(row, col)`` of a plane's view, through the real widget."""
    view = window.mpr.planes[plane]
    # Zoomed in to a few screen pixels per voxel, so a whole screen pixel names one voxel.
    view.vb.setRange(xRange=(col - 10, col + 10), yRange=(row - 10, row + 10), padding=0)
    scene = view.vb.mapViewToScene(QPointF(col, row))
    where = window.mpr.graphics.mapFromScene(scene)
    qtbot.mouseClick(
        window.mpr.graphics.viewport(),
        Qt.MouseButton.LeftButton,
        modifier,
        QPoint(round(where.x()), round(where.y())),
    )


def _show_mpr(qtbot, window):
    window.view.toggle_mpr()
    qtbot.waitUntil(lambda: window.tabs.currentWidget() is window.mpr and window.mpr.isVisible())
    qtbot.wait(50)


def test_a_click_in_any_plane_sets_the_point_simpleitk_gives_that_voxel(qtbot, window):
    image = open_and_wait(qtbot, window, [HEAD_CT])
    _show_mpr(qtbot, window)
    mpr, crosshair = window.mpr, window.mpr.crosshair
    assert mpr.stack.currentWidget() is mpr.graphics
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(HEAD_CT)))
    reference = reader.Execute()
    values = sitk.GetArrayViewFromImage(reference)

    _click(qtbot, window, "axial", 100.5, 300.5)
    assert crosshair.point[1:] == (100, 300)
    k, j, i = (round(v) for v in crosshair.array_index())
    assert window.state.frame == k  # the single view shows the slice the crosshair is on
    where = crosshair.patient()
    index = reference.TransformPhysicalPointToIndex(where)
    assert reference.TransformIndexToPhysicalPoint(index) == pytest.approx(where, abs=1e-3)
    assert values[index[2], index[1], index[0]] == pytest.approx(image.pixels[k, j, i])

    # A click in the coronal plane moves the axial slice: the single view follows it.
    _click(qtbot, window, "coronal", 5.5, 200.5)
    assert crosshair.point == (5, 100, 200)
    assert window.state.frame == round(crosshair.array_index()[0]) != k
    readout = mpr.readout.text
    assert f"Slice {window.state.frame + 1}, row 101, column 201" in readout
    assert "HU" in readout
    # Shift+drag moves it too; the wheel over the sagittal view moves only the sagittal plane.
    before = crosshair.point
    window.mpr.planes["sagittal"].vb.slice_scrolled.emit(1)
    assert crosshair.point == (before[0], before[1], before[2] + 1)
    # Scrolling the single view moves the axial plane of the MPR.
    window.state.step_frame(1)
    assert round(crosshair.array_index()[0]) == window.state.frame
    letters = {edge: item.textItem.toPlainText() for edge, item in mpr.planes["sagittal"].letters.items()}
    assert letters == {"top": "S", "bottom": "I", "left": "A", "right": "P"}


def _volume(shape, blob_at) -> Image:
    """An axial CT-like volume in memory (slices from the feet up, 2.5 mm apart, 0.5 mm pixels)
    with a bright blob at array voxel ``blob_at``."""
    pixels = np.full(shape, -1000.0, np.float32)
    k, j, i = blob_at
    pixels[k - 2 : k + 3, j - 8 : j + 9, i - 8 : i + 9] = 60.0
    pixels[k, j, i] = 80.0
    frames = tuple(
        FrameInfo(f"memory:slice{n}", sop_instance_uid=f"1.2.3.{n}", position=(-128.0, -128.0, 2.5 * n))
        for n in range(shape[0])
    )
    return Image(
        pixels,
        "MONOCHROME2",
        Geometry((2.5, 0.5, 0.5), "PixelSpacing", (-128.0, -128.0, 0.0)),
        Identity(modality="CT", patient_name="Blob^Phantom"),
        frames,
        default_window=Window(40.0, 400.0),
        is_volume=True,
        units="HU",
    )


def _blob_map(image: Image, blob_at) -> SaliencyMap:
    k, j, i = blob_at
    grid = np.indices(image.pixels.shape, dtype=np.float32)
    distance = (grid[0] - k) ** 2 * 16 + (grid[1] - j) ** 2 + (grid[2] - i) ** 2
    array = np.exp(-distance / 50).astype(np.float32)
    frames = tuple(range(image.n_frames))
    return SaliencyMap("gradcam", "any", 0, frames, array, array[:, ::8, ::8], "unit", 1.0, 0.1)


def _show_with_map(window, image: Image, smap: SaliencyMap) -> None:
    """Open ``image`` with ``smap`` as if computed for its target (in the cache, so the layer
    stays through slice changes)."""
    window.state.open(image)
    window.session.cache.put(id(image), window.state.model, smap)
    window.state.target = smap.target
    assert window.state.layer(smap.method) is not None


def test_a_blob_and_its_map_show_at_the_crosshair_in_every_plane(qtbot, window):
    blob = (30, 40, 90)  # slice from the feet, row (anterior first), column (patient's right first)
    image = _volume((48, 128, 128), blob)
    _show_with_map(window, image, _blob_map(image, blob))
    _show_mpr(qtbot, window)
    crosshair = window.mpr.crosshair
    crosshair.set_array_index(blob)
    # Superior first: slice 30 of 48 from the feet is display row 17; rows and columns as stored.
    assert crosshair.point == (17, 40, 90)
    for plane, (row, col) in {"axial": (40, 90), "coronal": (17, 90), "sagittal": (17, 40)}.items():
        view = window.mpr.planes[plane]
        base = view.base.image
        assert np.unravel_index(np.argmax(base), base.shape) == (row, col), plane
        layer = view.layers["gradcam"]
        assert layer.isVisible()
        assert np.unravel_index(np.argmax(layer.image), layer.image.shape) == (row, col), plane
        ratio = crosshair.reformat.plane_spacing(plane)
        assert view.vb.state["aspectLocked"] == pytest.approx(ratio[1] / ratio[0])
    assert window.mpr.planes["coronal"].base.image.shape == (48, 128)
    # Style changes reach every plane without re-cutting it.
    shown = window.mpr.planes["sagittal"].layers["gradcam"].image
    window.state.layer("gradcam").opacity = 0.9
    window.state.layer("gradcam").low = 0.5
    for view in window.mpr.planes.values():
        assert view.layers["gradcam"].opacity() == pytest.approx(0.9)
        assert view.layers["gradcam"].lut[0, 3] == 0
    assert window.mpr.planes["sagittal"].layers["gradcam"].image is shown
    window.state.layer("gradcam").visible = False
    assert not any(view.layers["gradcam"].isVisible() for view in window.mpr.planes.values())
    assert "Grad-CAM" not in window.mpr.readout.text


def test_a_radiograph_says_why_there_are_no_planes(qtbot, window):
    open_and_wait(qtbot, window, [resource_path("samples", "dicom", "cxr_0001.dcm")])
    window.tabs.setCurrentWidget(window.mpr)
    qtbot.waitUntil(window.mpr.isVisible)
    assert window.mpr.stack.currentWidget() is window.mpr.message
    assert "several slices" in window.mpr.message.text()
    assert not window.actions_by_id["mpr"].isEnabled()


@pytest.mark.skipif(not stalls.available(), reason="needs Linux's per-thread scheduler statistics")
def test_scrolling_a_200_slice_512_volume_with_a_map_never_stalls_the_loop(qtbot, window):
    blob = (100, 256, 256)
    image = _volume((200, 512, 512), blob)
    _show_with_map(window, image, _blob_map(image, blob))
    _show_mpr(qtbot, window)
    qtbot.wait(200)  # the layer's display volume is made once, before scrolling starts
    beat = stalls.AttributedHeartbeat(interval_ms=5)
    beat.start()
    crosshair = window.mpr.crosshair
    for plane, step in [("sagittal", 1)] * 40 + [("coronal", -1)] * 40 + [("axial", 1)] * 40:
        window.mpr.planes[plane].vb.slice_scrolled.emit(step)
        qtbot.wait(8)  # a wheel notch comes every few milliseconds when a user spins the wheel
    beat.stop()
    summary = beat.summary()
    print(f"heartbeat while scrolling: {summary}; {beat.report()}")
    assert crosshair.point == (99 + 40, 256 - 40, 256 + 40)
    assert summary["ticks"] > 100
    # The GUI thread's own CPU time between two ticks: what a step of scrolling costs it, which
    # the load of a shared machine cannot lengthen (its wall-clock worst stall is printed above).
    assert beat.attributed()["gui_cpu"].max() < 100, beat.report()


def test_maps_as_maximum_intensity_projections_show_the_blob_from_any_slice(qtbot, window):
    blob = (30, 40, 90)
    image = _volume((48, 128, 128), blob)
    _show_with_map(window, image, _blob_map(image, blob))
    _show_mpr(qtbot, window)
    crosshair = window.mpr.crosshair
    crosshair.set_array_index((2, 100, 10))  # far from the blob in every plane
    axial = window.mpr.planes["axial"]
    assert axial.layers["gradcam"].image.max() < 10  # its slice of the map: next to nothing
    window.actions_by_id["mpr_mip"].setChecked(True)
    expected = {"axial": (40, 90), "coronal": (17, 90), "sagittal": (17, 40)}
    for plane, where in expected.items():
        shown = window.mpr.planes[plane].layers["gradcam"].image
        assert np.unravel_index(np.argmax(shown), shown.shape) == where, plane
        assert shown.max() == 255
        assert "maximum-intensity projection" in window.mpr.planes[plane].title.text
    window.actions_by_id["mpr_mip"].setChecked(False)
    assert axial.layers["gradcam"].image.max() < 10


def test_cine_plays_the_slices_in_a_loop_at_the_chosen_rate(qtbot, window, settings):
    image = open_and_wait(qtbot, window, [HEAD_CT])
    cine = window.cine
    for _ in range(10):
        window.actions_by_id["cine_faster"].trigger()
    assert cine.fps == 30 and settings.value("cine/fps") == 30
    window.actions_by_id["cine_slower"].trigger()
    assert cine.fps == 25
    window.state.set_frame(image.n_frames - 2)
    seen = []
    window.state.events.frame.connect(seen.append)
    qtbot.keyClick(window, Qt.Key.Key_Space)  # the shortcut of View > Play / pause cine
    assert cine.is_playing
    qtbot.waitUntil(lambda: len(seen) >= 4, timeout=10_000)
    assert seen[:3] == [image.n_frames - 1, 0, 1]  # past the last slice it starts again
    window.actions_by_id["cine"].trigger()
    assert not cine.is_playing
    frame = window.state.frame
    qtbot.wait(200)
    assert window.state.frame == frame
    cine.play()
    open_and_wait(qtbot, window, [resource_path("samples", "dicom", "cxr_0001.dcm")])
    assert not cine.is_playing  # another image stops it
