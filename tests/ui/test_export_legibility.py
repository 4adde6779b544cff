"""Exports a radiologist puts on a slide or in a report, written through the real window's File
menu: the caption is whole at every size (a 1024 x 1024 film and a 512 x 512 CT slice at native
resolution, the view of a small window), the colour bar is in both exports, the annotation's
regions are named, the dialog proposes a useful name and the last export folder, corner text
and measurement values read on a white film, and the command line's --export / --export-native
write the files the menu writes.

Where tesseract is installed (CI installs it: .ci/run) the words are read back from the PNG by OCR.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image as PILImage
from PySide6.QtCore import QPoint, QPointF
from PySide6.QtGui import QColor, QFontMetrics, QImage, QRegion
from PySide6.QtWidgets import QWidget

from tests.system import need_program
from tests.ui.helpers import CHEST, CHEST_TRUTH, CT, CT_TRUTH, open_and_wait, run_and_wait, run_viewer
from viewer.io.image import Window
from viewer.state import ViewerState
from viewer.state.overlay_text import wrap_lines
from viewer.ui import export_dialogs, exports
from viewer.ui.export_footer import caption_lines
from viewer.ui.pictures import from_qimage

CAUTION_TAIL = "these probabilities mean nothing on real images"


# --- helpers -------------------------------------------------------------------------------------
def _real(source: Path, folder: Path) -> Path:
    """A copy of a bundled phantom study that the viewer takes for a real patient's (another
    manufacturer): the phantom-trained models then add their caution, the longest caption."""
    folder.mkdir(parents=True)
    files = sorted(source.iterdir()) if source.is_dir() else [source]
    for file in files:
        ds = pydicom.dcmread(file)
        ds.Manufacturer = "Example Medical"
        ds.save_as(folder / file.name)
    return folder if source.is_dir() else folder / source.name


def _export(window, monkeypatch, action: str, folder: Path | None = None) -> tuple[Path, Path]:
    """Trigger a File menu export; the save dialog answers with the name it proposed, in
    ``folder`` if given. Returns (the proposal, the file written)."""
    asked = {}

    def answer(_parent, _title, proposal, _filter):
        asked["proposal"] = Path(proposal)
        return str((folder or Path(proposal).parent) / Path(proposal).name), ""

    monkeypatch.setattr(export_dialogs.QFileDialog, "getSaveFileName", answer)
    window.actions_by_id[action].trigger()
    written = (folder or asked["proposal"].parent) / asked["proposal"].name
    assert written.is_file(), window.errors[-1:]
    return asked["proposal"], written


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(PILImage.open(path).convert("RGB")).astype(int)


def _ocr(rgb: np.ndarray, tmp_path: Path) -> str:
    """The text tesseract reads in ``rgb`` (enlarged twice, as a reader zooms a slide: tesseract
    misreads 14 px type now and then), lower case, with only letters, digits, '=' and '.' (it
    reads "AI" as "Al" and underscores as spaces: both are left out)."""
    program = need_program("tesseract")
    picture = tmp_path / "ocr.png"
    image = PILImage.fromarray(rgb.astype(np.uint8))
    image.resize((image.width * 2, image.height * 2), PILImage.Resampling.LANCZOS).save(picture)
    text = subprocess.run([program, str(picture), "-"], capture_output=True, text=True, check=True).stdout
    return _norm(text)


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9=.]+", "", text.lower().replace("ai-generated", "al-generated"))


def _saturated(rgb: np.ndarray) -> np.ndarray:
    return rgb.max(axis=-1) - rgb.min(axis=-1) > 100


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """(start, length) of the longest run of True in a 1-D mask."""
    padded = np.concatenate([[0], mask.astype(int), [0]])
    edges = np.flatnonzero(np.diff(padded))
    starts, ends = edges[::2], edges[1::2]
    if not len(starts):
        return 0, 0
    best = int((ends - starts).argmax())
    return int(starts[best]), int(ends[best] - starts[best])


def _has_jet_bar(lines: np.ndarray, length: int) -> bool:
    """A colour bar lies along one of ``lines`` (rows of pixels): an unbroken run of at least
    ``length`` saturated pixels (text has gaps between its letters) from jet's blue at one end to
    its red at the other."""
    runs = [_longest_run(_saturated(line)) for line in lines]
    row = int(np.argmax([n for _, n in runs]))
    start, count = runs[row]
    if count < length:
        return False
    first, last = lines[row][start], lines[row][start + count - 1]
    return bool(first[2] > first[0] + 80 and last[0] > last[2] + 80)


def _has_view_bar(picture: np.ndarray, length: int) -> bool:
    """The canvas's colour bar at the right of a view: a column from jet's red (top) to blue, with
    room right of it for its values and title, which are there (light, unsaturated pixels)."""
    right = picture[:, -80:]
    columns = right.transpose(1, 0, 2)[:, ::-1]  # each column, read from the bottom (blue) up
    if not _has_jet_bar(columns, length):
        return False
    column = int(np.argmax([_longest_run(_saturated(c))[1] for c in columns]))
    labels = right[:, column + 3 :]
    light = (labels.min(axis=-1) > 180) & ~_saturated(labels)
    return right.shape[1] - column > 25 and int(light.sum()) > 100


def _near(rgb: np.ndarray, colour: str, tolerance: int = 40) -> int:
    target = np.array(QColor(colour).getRgb()[:3])
    return int((np.abs(rgb - target).max(axis=-1) <= tolerance).sum())


def _check_caption(ctx, width: int) -> list[str]:
    """The lines the band of a picture ``width`` wide holds: each fact whole on a line, the
    caution's every word, the disclaimer on a line of its own. The words to read back."""
    caption = exports.export_caption_of(ctx)
    facts, caution, disclaimer = caption_lines(caption, width)
    assert all(any(fact in line for line in facts) for fact in caption.facts), facts
    assert " ".join(caution) == caption.caution
    assert disclaimer == ["AI-generated, not for diagnosis"]
    return [*caption.facts, caption.caution, *disclaimer]


def _read_back(bands: list[tuple[np.ndarray, list[str]]], tmp_path: Path) -> None:
    """OCR of each band finds each of its words (last in a test: a skip where tesseract is not
    installed, a failure in CI)."""
    for band, words in bands:
        text = _ocr(band, tmp_path)
        for said in words:
            assert _norm(said) in text, (said, text)


# --- the caption, the colour bar and the legend at three sizes -------------------------------------
def test_a_film_exported_natively_and_from_a_small_window_keeps_every_word(
    qtbot, window, tmp_path, monkeypatch
):
    film = _real(CHEST, tmp_path / "study")
    image = open_and_wait(qtbot, window, [film])
    assert window.session.annotation.load(CHEST_TRUTH)
    run_and_wait(qtbot, window, ["gradcam"])
    ctx = window.export_context()
    caption = exports.export_caption_of(ctx)
    assert caption.caution == "trained on synthetic phantoms only; " + CAUTION_TAIL
    assert caption.facts[0] == "Grad-CAM" and caption.facts[2] == "cxr_resnet18"
    assert caption.facts[1].startswith(f"{window.state.target} p=")
    assert caption.disclaimer == "AI-generated, not for diagnosis"

    # File > Export image at native resolution (Ctrl+Shift+E): 1024 wide, the band below.
    out = tmp_path / "exports"
    out.mkdir()
    proposal, native = _export(window, monkeypatch, "export_native", out)
    assert proposal == film.parent / "cxr_0002_gradcam_native.png"  # the study's folder at first
    rgb = _rgb(native)
    assert rgb.shape[1] == image.columns and rgb.shape[0] > image.rows
    footer = rgb[image.rows :]
    # The colour bar: jet from blue to red along a row of the band, at least 6 type sizes long.
    assert _has_jet_bar(footer, 6 * 14)
    # The annotation's regions, named in the colours they are outlined in.
    legend = exports.legend(ctx)
    assert {label for label, _ in legend} == {"cardiomegaly", "effusion"}
    for _label, colour in legend:
        assert _near(footer, colour) > 30, colour
    to_read = [(footer, [*_check_caption(ctx, rgb.shape[1]), *(label for label, _ in legend)])]

    # File > Export screenshot of the view (Ctrl+E) from a small window: the band wraps.
    window.resize(900, 650)
    qtbot.waitUntil(lambda: window.canvas.width() < 500)
    qtbot.wait(50)
    proposal, view = _export(window, monkeypatch, "export_view")
    assert proposal == out / "cxr_0002_gradcam.png"  # the last export's folder, remembered
    rgb = _rgb(view)
    canvas = window.canvas
    assert rgb.shape[0] > canvas.height() and rgb.shape[1] >= canvas.width()
    picture, footer = rgb[: canvas.height()], rgb[canvas.height() :]
    # The canvas's own colour bar is in the picture, at its right: a column from red to blue.
    assert _has_view_bar(picture, canvas.height() // 3)
    for _label, colour in legend:
        assert _near(footer, colour) > 30, colour
    to_read.append((footer, _check_caption(ctx, canvas.width())))
    # Exports never replace a file: the same export again is proposed as ..._2.
    assert window.exporter.proposal("view") == out / "cxr_0002_gradcam_2.png"
    _read_back(to_read, tmp_path)


def test_a_ct_slice_exported_natively_keeps_every_word(qtbot, window, tmp_path, monkeypatch):
    series = _real(CT, tmp_path / "ct_0001")
    image = open_and_wait(qtbot, window, [series])
    window.state.set_frame(11)
    assert window.session.annotation.load(CT_TRUTH)
    window.tabs.setCurrentWidget(window.mpr)  # the map arrives while the view is behind a tab
    run_and_wait(qtbot, window, ["gradcam"])
    ctx = window.export_context()
    assert exports.export_caption_of(ctx).caution.endswith(CAUTION_TAIL)
    proposal, native = _export(window, monkeypatch, "export_native", tmp_path)
    assert proposal.name == "ct_0001_im12_gradcam_native.png"
    rgb = _rgb(native)
    assert rgb.shape[1] == image.columns == 512
    footer = rgb[image.rows :]
    assert _has_jet_bar(footer, 6 * 14)
    legend = exports.legend(ctx)
    assert len(legend) == 2
    for _label, colour in legend:
        assert _near(footer, colour) > 30, colour
    to_read = [(footer, _check_caption(ctx, rgb.shape[1]))]

    # Export view (Ctrl+E) from the MPR tab: the view behind it is laid out with its colour bar,
    # and its corners are drawn without the patient's name (it is on screen: identifiers shown).
    canvas = window.canvas
    assert not canvas.isVisible() and "Phantom" in canvas.corners.labels["top_left"].text()
    drawn = []
    grab = canvas.grab

    def spy(*args):
        drawn.append(canvas.corners.labels["top_left"].text())
        return grab(*args)

    monkeypatch.setattr(canvas, "grab", spy)
    _, view = _export(window, monkeypatch, "export_view", tmp_path)
    assert drawn and "Phantom" not in drawn[-1] and "Phantom" in canvas.corners.labels["top_left"].text()
    rgb = _rgb(view)
    assert _has_view_bar(rgb[: canvas.height()], canvas.height() // 3)
    to_read.append((rgb[canvas.height() :], _check_caption(ctx, rgb.shape[1])))
    _read_back(to_read, tmp_path)


def test_caption_lines_keep_every_part_whole_and_fit(qapp):
    from PySide6.QtGui import QFont

    font = QFont()
    font.setPixelSize(14)
    advance = QFontMetrics(font).horizontalAdvance
    parts = ["Grad-CAM", "cardiomegaly p=0.931", "cxr_resnet18"]
    for width in (max(map(advance, parts)) + 1, 250, 400, 2000):
        lines = wrap_lines(parts, width, advance)
        assert all(advance(line) <= width for line in lines)
        assert all(any(part in line for line in lines) for part in parts)  # none split
    assert len(wrap_lines(parts, 2000, advance)) == 1
    # A caution longer than a line is broken between words, every word kept.
    caution = "trained on synthetic phantoms only; " + CAUTION_TAIL
    lines = wrap_lines([caution], 200, advance)
    assert len(lines) > 1 and " ".join(lines) == caution
    # A word longer than the line is broken between its characters.
    assert "".join(wrap_lines(["x" * 80], 100, advance)) == "x" * 80


# --- proposed names -------------------------------------------------------------------------------
def test_proposed_names_never_name_the_patient(qtbot, window, tmp_path):
    image = open_and_wait(qtbot, window, [CHEST])
    state = ViewerState(image=image)
    assert export_dialogs.export_name(state, "view") == "cxr_0002.png"
    frames = image.frames

    def named(source: str) -> str:
        moved = tuple(dataclasses.replace(f, source=source) for f in frames)
        return export_dialogs.export_name(
            ViewerState(image=dataclasses.replace(image, frames=moved)), "native"
        )

    # The patient is Phantom^Chest0002, ID PH-CXR_0002: a file named after them is not used.
    assert named("/data/Phantom_Chest0002.dcm") == "cr_chest_pa_native.png"
    assert named("/data/PH-CXR_0002.dcm") == "cr_chest_pa_native.png"
    assert named("/data/1.2.840.10008.5.1.4.1.1.1.dcm") == "cr_chest_pa_native.png"  # a UID
    assert named("/data/study one/x&y.dcm") == "x_y_native.png"  # file-name safe


# --- legible on a white film ----------------------------------------------------------------------
def test_corner_text_and_measurements_read_on_a_white_film(qtbot, window, tmp_path):
    from tests.ui.test_main_window import _drag

    image = open_and_wait(qtbot, window, [CHEST])
    # A window below the darkest pixel: the whole film is white.
    window.state.voi = Window(float(image.pixels.min()) - 10, 2.0, source="user")
    window.state.invert = False  # (this film is MONOCHROME1: shown inverted from its values)
    # On screen: a corner label painted over white shows dark pixels (its outline) and light ones.
    label = window.canvas.corners.labels["top_right"]
    assert label.text()
    over_white = QImage(label.size(), QImage.Format.Format_RGB888)
    over_white.fill(QColor("white"))
    label.render(over_white, QPoint(), QRegion(), QWidget.RenderFlag.DrawChildren)  # no background
    grey = from_qimage(over_white).mean(axis=-1)
    assert (grey < 80).sum() > 50 and (grey > 200).sum() > 50
    # The native export: the corner text over the white top corners is outlined too.
    ctx = window.export_context()
    plain = exports.compose_native(ctx).mean(axis=-1)
    shot = _rgb(exports.save_native(ctx, tmp_path / "white.png"))[: image.rows].mean(axis=-1)
    corner = (slice(0, 90), slice(image.columns - 260, image.columns))
    assert plain.min() > 250  # white under the text
    assert (shot[corner] < 80).sum() > 100  # the outline
    # A measurement's value on a dark plate.
    window.measure.actions["length"].trigger()
    vb = window.canvas.vb

    def screen(x, y):
        return window.canvas.mapFromScene(vb.mapViewToScene(QPointF(x, y)))

    _drag(window.canvas, screen(40, 120), screen(200, 120))
    text = next(item for item in window.measure.drawn.items if hasattr(item, "textItem"))
    rect = window.canvas.mapFromScene(text.sceneBoundingRect()).boundingRect()
    grab = from_qimage(window.canvas.grab().toImage()).mean(axis=-1)
    under = grab[rect.top() + 2 : rect.bottom() - 1, rect.left() + 2 : rect.right() - 1]
    assert under.size and under.mean() < 140, under.mean()


# --- the command line -----------------------------------------------------------------------------
def test_export_flags_write_the_files_the_menu_writes(qtbot, window, tmp_path, monkeypatch):
    view, native, shot = tmp_path / "v.png", tmp_path / "n.png", tmp_path / "s.png"
    result = run_viewer(
        "--demo", "--methods", "gradcam", "--size", "1280x800",
        "--export", view, "--export-native", native, "--screenshot", shot,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert view.is_file() and native.is_file() and PILImage.open(shot).size == (1280, 800)
    # The same study, model, method and window size through File > Export in this process.
    window.resize(1280, 800)
    open_and_wait(qtbot, window, [CHEST])
    assert window.session.annotation.load(CHEST_TRUTH)
    run_and_wait(qtbot, window, ["gradcam"])
    qtbot.wait(300)
    menu = tmp_path / "menu"
    menu.mkdir()
    _, menu_native = _export(window, monkeypatch, "export_native", menu)
    _, menu_view = _export(window, monkeypatch, "export_view", menu)
    assert np.array_equal(_rgb(native), _rgb(menu_native))
    # The view: the canvas of a window of the same size (its height may differ by a few pixels
    # with what the status bar shows) and the same band under it.
    cli_view, menu_rgb = _rgb(view), _rgb(menu_view)
    band = menu_rgb.shape[0] - window.canvas.height()
    assert cli_view.shape[1] == menu_rgb.shape[1] and abs(cli_view.shape[0] - menu_rgb.shape[0]) <= 10
    assert np.array_equal(cli_view[-band:], menu_rgb[-band:])
    assert _has_view_bar(cli_view[:-band], 200)
    # Said before anything runs: a file that exists, a format that is not an image's.
    exists = run_viewer("--demo", "--export-native", native)
    assert exists.returncode == 2 and "exists" in exists.stderr
    bad = run_viewer("--demo", "--export", tmp_path / "view.tiff")
    assert bad.returncode == 2 and ".png" in bad.stderr
