"""Open-to-first-image, open-to-first-prediction, open-to-first-map and the GUI heartbeat from
opening a folder of films until its first film is predicted and every thumbnail is in, for the
package under ``--root`` (this checkout, or a git worktree of an older commit: the driver uses
only what every version of the window has). Prints one JSON line.

    QT_QPA_PLATFORM=offscreen python tests/perf/gui_timings.py --root . [--films 200]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--films", type=int, default=200)
    args = parser.parse_args()
    sys.path.insert(0, str(args.root.resolve()))
    sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # tests.ui.heartbeat

    import numpy as np
    from PIL import Image as PILImage
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from tests.ui.heartbeat import Heartbeat
    from viewer.resources import resources_root
    from viewer.state import tasks
    from viewer.ui.main_window import MainWindow
    from viewer.ui.self_test import wait_until

    app = QApplication.instance() or QApplication([])
    tasks.warm_up()
    folder = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    base = (rng.random((64, 64)) * 255).astype(np.uint8)
    for i in range(args.films):
        film = PILImage.fromarray(np.roll(base, i, axis=0)).resize((1024, 1024), PILImage.BILINEAR)
        film.save(folder / f"film_{i:04d}.png")
    settings = QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings)
    window.resize(1600, 1000)
    window.show()
    window.model_panel.select_model("cxr_resnet18")
    model_of = getattr(window, "session", window)  # the prediction moved to the session
    app.processEvents()

    thumbnails = []
    original = window.browser.set_thumbnail
    window.browser.set_thumbnail = lambda index, picture: (thumbnails.append(index), original(index, picture))
    beat = Heartbeat(5)
    beat.start()
    start = time.perf_counter()
    window.open_paths([str(folder)])
    wait_until(lambda: window.state.image is not None, 120, "the first film")
    window.repaint()
    first_image = time.perf_counter() - start
    predicted: list[float] = []

    def usable() -> bool:  # the first film predicted, every thumbnail in
        if not predicted and model_of.prediction is not None:
            predicted.append(time.perf_counter())
        return bool(predicted) and len(thumbnails) >= args.films

    wait_until(usable, 600, "the first film's prediction and every thumbnail")
    thumbnails_done = time.perf_counter() - start
    first_prediction = predicted[0] - start
    beat.stop()
    stream = beat.summary()
    stalls = beat.stalls_ms()
    worst_at = float(beat.ticks[int(np.argmax(stalls)) + 1] - beat.ticks[0]) if stalls.size else 0.0

    study = resources_root() / "samples" / "dicom" / "cxr_0002.dcm"
    shown = []
    window.maps_shown.connect(lambda: shown.append(time.perf_counter()))
    start = time.perf_counter()
    window.open_paths([str(study)])

    def study_predicted() -> bool:
        image = window.state.image
        return image is not None and image.frames[0].source == str(study) and model_of.prediction is not None

    wait_until(study_predicted, 120, "the study")
    window.run_methods(["gradcam"])
    wait_until(lambda: bool(shown), 300, "the first map")
    first_map = shown[0] - start
    window.close()
    print(
        json.dumps(
            {
                "first_image_s": first_image,
                "first_prediction_s": first_prediction,
                "thumbnails_s": thumbnails_done,
                "stream_ticks": stream["ticks"],
                "stream_expected_ticks": round(thumbnails_done / 0.005),
                "stream_p99_ms": stream["p99_ms"],
                "stream_max_ms": stream["max_ms"],
                "stream_worst_at_s": worst_at,
                "first_map_s": first_map,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
