"""``saliency-viewer --self-test``: prove an installation works, without a display.

Builds the real main window on Qt's offscreen platform, opens each bundled sample study with each
bundled model made for its modality, runs the methods (default: the viewer's default set), checks
that every map arrived as a finite layer on the image's native grid in its stated range, saves a
screenshot per run into a temporary folder and prints what it checked. Exit status 0 means all of
it worked; 1 names what did not.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEventLoop, QSettings, QTimer, qInstallMessageHandler
from PySide6.QtWidgets import QApplication

from viewer.explain import DEFAULT_METHODS
from viewer.inference.catalog import bundled_models
from viewer.inference.manifest import ManifestError, load_manifest
from viewer.io import discover
from viewer.io.atomic import write_bytes_new
from viewer.resources import resources_root
from viewer.ui.desktop_check import Diagnosis, explain

_RANGE = {"unit": (0.0, 1.0), "absolute": (0.0, 1.0), "signed": (-1.0, 1.0)}


class SelfTestError(Exception):
    pass


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Run the event loop until ``predicate()`` holds; raise after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    loop = QEventLoop()
    poll = QTimer()
    poll.timeout.connect(lambda: loop.quit() if predicate() or time.monotonic() > deadline else None)
    poll.start(20)
    if not predicate():
        loop.exec()
    poll.stop()
    if not predicate():
        raise SelfTestError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def sample_studies() -> list[Path]:
    """The bundled sample studies: each chest film, and the head CT series (a folder)."""
    root = resources_root() / "samples" / "dicom"
    return sorted(p for p in root.iterdir() if p.suffix == ".dcm" or p.is_dir())


def _offscreen_messages(_mode, _context, message: str) -> None:
    # The offscreen platform cannot size native windows and says so for every dock; not a fault.
    if "propagateSizeHints" not in message:
        print(message, file=sys.stderr)


def check_desktop(desktop: Diagnosis) -> bool:
    """Report whether the desktop's own platform plugin would load here; ``False`` when system
    libraries it needs are missing (no window could open). No display is not a fault: the
    self-test is made to run headless."""
    if desktop.ok:
        print(f"ok  desktop: Qt's {desktop.platform!r} platform plugin loads and reaches the display")
        return True
    if any(problem.missing for problem in desktop.problems):
        print(f"self-test FAILED: {explain(desktop)}", file=sys.stderr)
        return False
    reasons = "; ".join(problem.reason for problem in desktop.problems)
    print(f"ok  desktop: the {'/'.join(desktop.platforms)} plugin's libraries are installed ({reasons})")
    return True


def run_self_test(
    methods: list[str] | None = None,
    out: Path | None = None,
    timeout_s: float = 900,
    desktop: Diagnosis | None = None,
) -> int:
    """``desktop``: what :func:`viewer.ui.desktop_check.diagnose` found for the desktop's own
    platform (before the self-test switched to offscreen); checked first when given."""
    from viewer.ui.main_window import MainWindow
    from viewer.ui.theme import apply_dark_theme

    if desktop is not None and not check_desktop(desktop):
        return 1
    methods = list(methods or DEFAULT_METHODS)
    out = out or Path(tempfile.mkdtemp(prefix="saliency-viewer-self-test-"))
    previous_handler = qInstallMessageHandler(_offscreen_messages)
    app = QApplication.instance()
    if app is None:
        app = QApplication([sys.argv[0], "-platform", "offscreen"])
        apply_dark_theme(app)  # the screenshots look like the app
    settings = QSettings(str(out / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings)
    window.resize(1400, 900)
    window.show()
    checked, start = 0, time.monotonic()
    try:
        models = bundled_models()
        if not models:
            raise SelfTestError("no bundled models found")
        for study in sample_studies():
            modality = discover([study]).series[0].modality
            for name, manifest in models.items():
                try:
                    accepts = load_manifest(manifest).accepts(modality)
                except ManifestError as exc:
                    raise SelfTestError(f"{name}: {exc}") from None
                if not accepts:
                    continue
                checked += _check_one(window, study, name, methods, out, timeout_s)
        if checked == 0:
            raise SelfTestError("no sample study matched a bundled model")
    except SelfTestError as exc:
        print(f"self-test FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        window.close()
        app.processEvents()
        qInstallMessageHandler(previous_handler)
    print(f"self-test passed: {checked} maps in {time.monotonic() - start:.0f} s; screenshots in {out}")
    return 0


def _check_one(window, study: Path, model: str, methods: list[str], out: Path, timeout_s: float) -> int:
    errors = len(window.errors)
    before = window.state.image

    def failed() -> bool:  # a model that cannot load or predict says so at once: stop waiting
        return len(window.errors) > errors

    def check_errors() -> None:
        if failed():
            raise SelfTestError(f"{model} on {study.name}: {window.errors[-1]}")

    window.open_paths([study])
    wait_until(lambda: window.state.image is not before or failed(), timeout_s, "the study")
    check_errors()
    if window.model_panel.models.currentText() != model:  # the viewer chose another model for it
        window.model_panel.select_model(model)  # resets the prediction and predicts again
    if window.model_panel.models.currentText() != model:
        raise SelfTestError(f"{model} is not in the window's list of models")
    wait_until(lambda: window.session.model.prediction is not None or failed(), timeout_s, "the prediction")
    check_errors()
    image, frame = window.state.image, window.state.frame
    shown = []

    def on_shown() -> None:
        shown.append(True)

    window.maps_shown.connect(on_shown)
    try:
        window.run_methods(methods)
        wait_until(lambda: bool(shown) or failed(), timeout_s, f"{model}'s maps")
    finally:
        window.maps_shown.disconnect(on_shown)
    check_errors()
    for method in methods:
        layer = window.state.layer(method)
        values = layer.values(frame) if layer is not None else None
        if values is None:
            raise SelfTestError(f"{model} on {study.name}: no {method} map")
        low, high = _RANGE[layer.convention]
        if values.shape != (image.rows, image.columns) or not np.isfinite(values).all():
            raise SelfTestError(f"{model} {method}: map {values.shape} is not finite on the native grid")
        if values.min() < low - 1e-5 or values.max() > high + 1e-5:
            raise SelfTestError(f"{model} {method}: values outside [{low}, {high}]")
    from viewer.ui.exports import encode, render_window

    shot = out / f"{study.stem}_{model}.png"
    write_bytes_new(shot, encode(render_window(window, window.export_context()), ".png"))
    target = window.state.target
    probability = window.session.model.probability()
    print(
        f"ok  {study.name} ({image.modality}, {image.n_frames} frame(s)) with {model}: "
        f"target {target} p={probability:.3f}, {len(methods)} maps on frame {frame}, "
        f"{sum(layer.map_for(frame).seconds for layer in window.state.layers):.1f} s; {shot.name}"
    )
    if not math.isfinite(probability):
        raise SelfTestError(f"{model}: probability is not finite")
    return len(methods)
