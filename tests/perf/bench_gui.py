"""GUI responsiveness while the default methods run, and what the GUI costs over the bare engine.

    QT_QPA_PLATFORM=offscreen python tests/perf/bench_gui.py [--runs 3] [--methods ...]

Opens the bundled chest study in the real main window, starts a 5 ms QTimer heartbeat on the GUI
thread, runs the methods (default: the viewer's default set, LIME included) through the window's
background worker and reports the event loop's stalls (how late a tick came: max, 99th
percentile, median). In the same run it times ``viewer.explain.explain`` on the same image and
model without any GUI, so the ratio says what showing maps progressively costs.

With ``--against REF`` it also measures open-to-first-image, open-to-first-map and the heartbeat
while a folder of PNG films streams its thumbnails (``tests/perf/gui_timings.py``), for this
checkout and for a git worktree of REF, in the same run, and prints the ratios.

It then times LIME and RISE alone in the window on the same film, from Run to the first map on
screen and to the final one, with the anytime refinement on (the estimate shown as it is
refined) and off (the code path from before it: one map when the method is done), alternating
in one window whose network had its batch size tuned first, so both sides run the same batches
(``--anytime-runs N`` pairs, 0 skips them; ``--anytime-only`` runs only these):

    QT_QPA_PLATFORM=offscreen python tests/perf/bench_gui.py --anytime-only --anytime-runs 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from tests.ui.heartbeat import Heartbeat  # noqa: E402
from viewer.explain import DEFAULT_METHODS, explain  # noqa: E402
from viewer.inference.catalog import resolve_model  # noqa: E402
from viewer.inference.model import LoadedModel  # noqa: E402
from viewer.io import discover, load_series  # noqa: E402
from viewer.resources import resources_root  # noqa: E402
from viewer.state import tasks  # noqa: E402
from viewer.ui.self_test import wait_until  # noqa: E402

STUDY = resources_root() / "samples" / "dicom" / "cxr_0002.dcm"


def window_on_film():
    """A window of its own (fresh settings) with the chest model's prediction of the film on screen."""
    from viewer.ui.main_window import MainWindow

    settings = QSettings(str(Path(tempfile.mkdtemp()) / "s.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings)
    window.resize(1600, 1000)
    window.show()
    window.model_panel.select_model("cxr_resnet18")
    window.open_paths([str(STUDY)])
    wait_until(lambda: window.session.model.prediction is not None, 120, "the prediction")
    return window


def gui_run(app, methods: list[str]) -> tuple[dict, float]:
    window = window_on_film()
    done = []
    window.maps_shown.connect(lambda: done.append(time.perf_counter()))
    app.processEvents()
    beat = Heartbeat(5)
    beat.start()
    start = time.perf_counter()
    window.run_methods(methods)
    wait_until(lambda: bool(done), 1200, "the maps")
    seconds = done[0] - start
    end = time.perf_counter() + 0.3
    wait_until(lambda: time.perf_counter() > end, 5, "the last paint")
    beat.stop()
    window.close()
    return beat.summary(), seconds


def first_and_final(window, method: str, anytime: bool) -> tuple[float, float, str]:
    """Seconds from Run to ``method``'s first map on screen and to its final map (nothing
    cached), and the first map's progress ("" when it was the final one)."""
    session = window.session
    session.cache.drop_image(id(window.state.image))
    session.layers.rebuild()
    session.explanation.anytime = anytime
    first: list[tuple[float, str]] = []

    def inserted(_index, layer) -> None:
        if layer.method == method and not first:
            first.append((time.perf_counter(), next(iter(layer.maps.values())).progress))

    done: list[float] = []

    def shown() -> None:
        done.append(time.perf_counter())

    window.state.layers.events.inserted.connect(inserted)
    window.maps_shown.connect(shown)
    start = time.perf_counter()
    window.run_methods([method])
    wait_until(lambda: bool(done), 1200, f"the {method} map")
    window.state.layers.events.inserted.disconnect(inserted)
    window.maps_shown.disconnect(shown)
    return first[0][0] - start, done[0] - start, first[0][1]


def anytime_rows(app, runs: int) -> None:
    """First and final map of LIME and RISE, anytime on and off, alternating, in one window whose
    network has had its batch size tuned first (so both sides run the same batches); medians."""
    from viewer.explain import context
    from viewer.explain.registry import get_method

    window = window_on_film()
    model = window.session.model.store.get(window.session.model.manifest_path)
    explain(model, window.state.image, [get_method("rise", masks=96, converge=False)], frames=[0])
    tuned = sorted(set(context._TUNED.values()))
    print(f"LIME and RISE alone on {STUDY.name}, anytime refinement on vs off (the code path before it),")
    print(f"{runs} pair(s), one window, batch size tuned first ({tuned}):")
    for method in ("lime", "rise"):
        times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for run in range(runs):
            for anytime in (False, True) if run % 2 else (True, False):
                first, final, progress = first_and_final(window, method, anytime)
                times[anytime].append((first, final))
                shown = f"first map at {progress}" if progress else "first map = final map"
                mode = "on " if anytime else "off"
                print(f"  {method} anytime {mode}: first {first:6.2f} s, final {final:6.2f} s ({shown})")
        (b_first, b_final), (a_first, a_final) = (
            np.median(np.array(times[k]), axis=0) for k in (False, True)
        )
        print(
            f"{method:5s} first map {b_first:6.2f} s -> {a_first:6.2f} s ({b_first / a_first:.1f}x sooner); "
            f"final map {b_final:6.2f} s -> {a_final:6.2f} s ({a_final / b_final:.2f}x the time)"
        )
    window.close()


def engine_run(methods: list[str]) -> float:
    model = LoadedModel.from_manifest(resolve_model("cxr_resnet18"), device="cpu")
    image = load_series(discover([STUDY]).series[0])
    start = time.perf_counter()
    explain(model, image, methods, frames=[0])
    return time.perf_counter() - start


def timings(root: Path, films: int) -> dict:
    """gui_timings.py on the package under ``root``, in a fresh interpreter."""
    driver = Path(__file__).with_name("gui_timings.py")
    command = [sys.executable, str(driver), "--root", str(root), "--films", str(films)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=1800).stdout
    return json.loads(out.strip().splitlines()[-1])


def compare(ref: str, films: int, repeats: int) -> None:
    """This checkout against a worktree of ``ref``: same machine, same run, alternating, each
    figure the median of ``repeats``."""
    worktree = Path(tempfile.mkdtemp()) / "before"
    subprocess.run(["git", "worktree", "add", "--detach", str(worktree), ref], cwd=ROOT, check=True)
    try:
        runs = [(timings(worktree, films), timings(ROOT, films)) for _ in range(repeats)]
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=True)
    before = {k: float(np.median([b[k] for b, _ in runs])) for k in runs[0][0]}
    after = {k: float(np.median([a[k] for _, a in runs])) for k in runs[0][1]}
    print(
        f"{films} PNG films, then the chest study with Grad-CAM; {ref} vs this checkout, median of {repeats}:"
    )
    for key in (k for k in before if k in after):
        ratio = after[key] / before[key] if before[key] else float("nan")
        print(f"  {key:22s} {before[key]:10.3f} -> {after[key]:10.3f}  ({ratio:.2f}x)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--against", metavar="REF", help="also time opening against this git commit")
    parser.add_argument("--films", type=int, default=200, help="PNG films in the --against folder")
    parser.add_argument("--repeats", type=int, default=3, help="--against runs of each side")
    parser.add_argument("--anytime-runs", type=int, default=1, help="LIME/RISE on-off pairs (0: none)")
    parser.add_argument("--anytime-only", action="store_true", help="only the LIME/RISE first-map rows")
    args = parser.parse_args()
    if args.against:
        compare(args.against, args.films, args.repeats)
    methods = args.methods.split(",")
    app = QApplication.instance() or QApplication([])
    tasks.warm_up()
    if args.anytime_only:
        anytime_rows(app, max(1, args.anytime_runs))
        return 0
    print(f"{len(methods)} methods ({', '.join(methods)}) on {STUDY.name}, {os.cpu_count()} CPUs")
    stalls, gui_seconds, engine_seconds = [], [], []
    for run in range(args.runs):
        summary, seconds = gui_run(app, methods)
        engine = engine_run(methods)
        stalls.append(summary)
        gui_seconds.append(seconds)
        engine_seconds.append(engine)
        print(
            f"run {run + 1}: max stall {summary['max_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms, "
            f"median {summary['median_ms']:.2f} ms over {summary['ticks']} ticks; "
            f"GUI {seconds:.1f} s vs engine alone {engine:.1f} s"
        )
    worst = max(s["max_ms"] for s in stalls)
    p99 = float(np.median([s["p99_ms"] for s in stalls]))
    ratio = float(np.median(gui_seconds)) / float(np.median(engine_seconds))
    print(f"worst stall {worst:.1f} ms (goal < 100), median p99 {p99:.1f} ms")
    print(f"GUI run time / engine alone: {ratio:.2f}x (median of {args.runs})")
    if args.anytime_runs:
        anytime_rows(app, args.anytime_runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
