"""The bundled samples the GUI tests open, the waits they share (the window itself is the
``window`` fixture of :mod:`tests.plugins.gui`), and the viewer run headless as a command."""

from __future__ import annotations

import os
import subprocess
import sys

from viewer.resources import resources_root

SAMPLES = resources_root() / "samples"
CHEST = SAMPLES / "dicom" / "cxr_0002.dcm"  # cardiomegaly + effusion
CHEST_NODULE = SAMPLES / "dicom" / "cxr_0001.dcm"  # nodule + consolidation
CT = SAMPLES / "dicom" / "ct_0001"  # 28 slices, subdural + intraparenchymal
CHEST_TRUTH = SAMPLES / "annotations" / "cxr_0002.json"
CT_TRUTH = SAMPLES / "annotations" / "ct_0001.json"
FAST_METHODS = ["gradcam", "gradcam++", "guided-backprop", "guided-gradcam", "deconvnet"]


def open_and_wait(qtbot, window, paths, timeout=60_000):
    """Open paths and wait until the image is shown and the model has predicted."""
    with qtbot.waitSignal(
        window.runner.result, timeout=timeout, check_params_cb=lambda j, k, p: k == "loaded"
    ):
        window.open_paths([str(p) for p in paths])
    qtbot.waitUntil(lambda: window.session.model.prediction is not None, timeout=timeout)
    return window.state.image


def show_model_outputs(qtbot, window, path, manifest, ready, methods):
    """Open ``path``, keep the model of ``manifest`` on it (not the modality's own choice), wait
    until ``ready()`` (its masks or boxes are in), tick ``methods`` and fit the image once the
    outputs dock has opened: the dock narrows the canvas, and a click placed before that layout
    settles lands elsewhere once it has."""
    session = window.session
    open_and_wait(qtbot, window, [path])
    session.model.for_modality = False
    assert session.model.add(manifest)
    qtbot.waitUntil(ready, timeout=120_000)
    window.model_panel.set_checked_methods(methods)
    qtbot.waitUntil(lambda: not window.docks["outputs"].isHidden())
    qtbot.wait(100)
    window.canvas.fit()
    qtbot.wait(50)


def run_and_wait(qtbot, window, methods, timeout=300_000):
    with qtbot.waitSignal(window.maps_shown, timeout=timeout):
        window.run_methods(methods)


def run_viewer(*args, timeout=600, **env_overrides) -> subprocess.CompletedProcess:
    """``python -m viewer ARGS`` in a child process, offscreen (headless screenshots, exports)."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", **env_overrides}
    return subprocess.run(
        [sys.executable, "-m", "viewer", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
