"""Start the desktop viewer; ``--screenshot``, ``--export`` and ``--export-native`` run it
headless and save the window, the view or the image.

    saliency-viewer [PATH...] [--demo] [--model M] [--methods m1,m2] [--target LABEL]
                    [--annotation FILE] [--layer METHOD] [--compare] [--screenshot OUT.png]
                    [--export VIEW.png] [--export-native IMAGE.png] [--show-phi]

With any of the three the real main window is built (the offscreen platform is fine), the input is
loaded, the methods run, and once their layers are shown (and with ``--compare``, the comparison
numbers) the whole window is saved (``--screenshot``), and the files File > Export screenshot of
the view and Export image at native resolution write are written by the same code
(:func:`viewer.ui.exports.save`); the program exits 0, or 1 with a message. These are exports: the
patient's identifiers are hidden unless ``--show-phi`` (the switch File > Show patient
identifiers in exports) shows them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from viewer import __version__
from viewer.explain.registry import METHODS
from viewer.inference.catalog import bundled_models, resolve_model
from viewer.inference.manifest import ManifestError
from viewer.io.pacs import is_study_url
from viewer.resources import resource_path, resources_root
from viewer.state import tasks
from viewer.ui import desktop_check
from viewer.ui.main_window import MainWindow
from viewer.ui.theme import apply_dark_theme

DEMO_STUDY = ("samples", "dicom", "cxr_0002.dcm")
DEMO_ANNOTATION = ("samples", "annotations", "cxr_0002.json")
DEMO_MODEL = "cxr_resnet18"


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT in pixels, e.g. 1600x1000")
    return int(width), int(height)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saliency-viewer",
        description="See where a CNN is looking, on real DICOM, next to the radiologist's annotation. "
        "Headless subcommands: saliency-viewer {info,phantom,explain} --help.",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="files, folders, ZIP archives or DICOMDIRs, or study URLs (http(s)://.../studies/UID, "
        "dimse://AE@HOST:PORT/UID, pacs://NODE/UID), retrieved from the PACS and opened as they arrive",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--demo", action="store_true", help="open the bundled sample chest study and model")
    parser.add_argument("--model", help="a bundled model's name, or a manifest.toml")
    parser.add_argument(
        "--trust-code",
        action="store_true",
        help='import the Python file a manifest\'s arch = "python:net.py:Class" names (your own code); '
        "never for a model from a ZIP, a PACS or an address",
    )
    parser.add_argument("--methods", help="comma-separated method ids to run (e.g. gradcam,lime); 'all'")
    parser.add_argument("--target", help="label to explain (default: the top prediction)")
    parser.add_argument(
        "--annotation",
        type=Path,
        help="annotation to load (JSON, DICOM SEG or RTSTRUCT, CSV, NIfTI or PNG mask)",
    )
    parser.add_argument("--layer", help="method whose layer is selected (default: the last computed)")
    parser.add_argument("--compare", action="store_true", help="show the comparison panel")
    parser.add_argument(
        "--layout",
        choices=("single", "mpr"),
        default="single",
        help="mpr: axial, coronal and sagittal views of a CT or MR series "
        "(with --screenshot, the crosshair on the map's strongest voxel)",
    )
    parser.add_argument(
        "--explain-series",
        action="store_true",
        help="with --screenshot: run the methods on every slice of the series (one scale across it), "
        "not only on the one on screen",
    )
    parser.add_argument("--screenshot", type=Path, help="save the window to this PNG once ready, then exit")
    parser.add_argument(
        "--export",
        type=Path,
        metavar="PATH",
        help="headless: write the view as File > Export screenshot of the view does (PNG or JPEG: "
        "layers, annotation and its legend, colour bar, caption), then exit",
    )
    parser.add_argument(
        "--export-native",
        type=Path,
        metavar="PATH",
        help="headless: write the image at native resolution as File > Export image at native "
        "resolution does (PNG or JPEG), then exit",
    )
    parser.add_argument(
        "--show-phi",
        action="store_true",
        help="with --screenshot or --export...: show the patient's name, ID, birth date and "
        "institution, as File > Show patient identifiers in exports does (hidden by default, as in "
        "every export)",
    )
    parser.add_argument(
        "--size",
        type=_size,
        help="window size WxH (default: 1600x1000 for --screenshot and --export...; else the last size, "
        "or what fits)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600,
        help="seconds --screenshot or --export... may take (default 600)",
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="without a display: open the bundled samples with every bundled model, run the methods "
        "(default: the default set), save screenshots to a temporary folder, exit 0 if all worked",
    )
    parser.add_argument(
        "--quit-on-first-image",
        action="store_true",
        help="print 'first image shown' and quit once the first image is drawn (start-up timing)",
    )
    parser.add_argument(
        "--check-desktop",
        action="store_true",
        help="check that a window can open here (Qt platform plugin libraries, display), exit 0 or 1",
    )
    parser.add_argument("--run", action="store_true", help="run the ticked methods on each image as it opens")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.trust_code:
        from viewer.inference.user_code import allow_user_code

        allow_user_code()  # python: models of this session may be imported (the user's consent)
    methods = _methods(args.methods)
    if isinstance(methods, str):
        print(methods, file=sys.stderr)
        return 2
    if args.layer and args.layer not in METHODS:
        print(f"--layer {args.layer}: unknown method; known: {', '.join(METHODS)}", file=sys.stderr)
        return 2
    if args.check_desktop:
        return _check_desktop()
    if args.self_test:
        from viewer.ui.self_test import run_self_test

        desktop = desktop_check.diagnose()  # the desktop's own platform, before forcing offscreen
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # no display needed, even where one exists
        return run_self_test(methods or None, desktop=desktop)
    paths = [str(p) for p in args.paths]
    annotation, model = args.annotation, args.model
    if args.demo:
        paths = paths or [str(resources_root().joinpath(*DEMO_STUDY))]
        annotation = annotation or resources_root().joinpath(*DEMO_ANNOTATION)
        model = model or DEMO_MODEL
    if args.quit_on_first_image and not paths:
        print("--quit-on-first-image needs something to open: PATH... or --demo", file=sys.stderr)
        return 2
    for path in paths:
        if not is_study_url(path) and not Path(path).exists():
            print(f"{path}: no such file or folder", file=sys.stderr)
            return 2
    if problem := _outputs_problem(args):
        print(problem, file=sys.stderr)
        return 2
    headless = bool(args.screenshot or args.export or args.export_native)
    app = QApplication.instance() or _new_application(headless_ok=headless)
    if app is None:
        return 1
    configure(app)

    if headless:
        # Headless runs neither read nor change the user's preferences.
        settings = QSettings(str(Path(tempfile.mkdtemp()) / "settings.ini"), QSettings.Format.IniFormat)
    else:
        settings = QSettings()
    window = MainWindow(settings)
    if model and not select_model(window, model):
        print(
            f"--model {model}: not a bundled model ({', '.join(bundled_models())}) or a manifest",
            file=sys.stderr,
        )
        return 2
    if methods:
        window.model_panel.set_checked_methods(methods)
    if headless:
        window.show_phi.setChecked(args.show_phi)  # a screenshot is an export: identifiers hidden
        window.resize(*(args.size or (1600, 1000)))
        return HeadlessRun(window, app, args, paths, annotation, methods).exec()
    if args.run:
        window.model_panel.run_on_open.setChecked(True)
    if args.size:
        window.place(*args.size)
    window.show()
    if paths:
        if args.quit_on_first_image:
            _after_image(window, lambda: QTimer.singleShot(0, lambda: _report_first_image(window, app)))
        window.open_paths(paths)
        if annotation:
            _after_image(window, lambda: window.session.annotation.load(annotation))
        if args.target:
            _after_prediction(window, lambda: setattr(window.state, "target", args.target))
    if args.compare:
        window.tabs.setCurrentIndex(1)
    elif args.layout == "mpr":
        window.tabs.setCurrentWidget(window.mpr)
    return app.exec()


def configure(app: QApplication) -> None:
    """Make ``app`` the viewer's: its names (where QSettings keeps the preferences), icon, theme,
    and torch warmed up on the GUI thread before a window is live. Also for an application that
    a notebook's ``%gui qt`` or a script made (``viewer.Viewer``)."""
    app.setOrganizationName("SaliencyViewer")
    app.setApplicationName("Saliency Viewer")
    app.setApplicationVersion(__version__)
    app.setWindowIcon(QIcon(str(resource_path("icons", "saliency-viewer.svg"))))
    app.setDesktopFileName("saliency-viewer")  # Wayland matches the window to the .desktop entry
    apply_dark_theme(app)
    tasks.warm_up()  # torch's first use on the GUI thread, before the window is live


def _outputs_problem(args) -> str | None:
    """Why the exports asked for cannot be written, said before the methods run, or None."""
    from viewer.ui.exports import FORMATS

    for flag, path in (("--export", args.export), ("--export-native", args.export_native)):
        if path is None:
            continue
        if path.suffix.lower() not in FORMATS:
            return f"{flag} {path}: use a .png, .jpg or .jpeg file name"
        if path.exists():
            return f"{flag} {path}: the file exists (exports never replace a file)"
    if args.export and args.export == args.export_native:
        return "--export and --export-native name the same file"
    return None


def _check_desktop() -> int:
    diagnosis = desktop_check.diagnose()
    if not diagnosis.ok:
        print(desktop_check.explain(diagnosis), file=sys.stderr)
        return 1
    print(f"desktop ok: Qt will use its {diagnosis.platform!r} platform plugin")
    return 0


def _new_application(headless_ok: bool) -> QApplication | None:
    """The QApplication, once the desktop can show it; ``None`` (message printed) when it cannot.
    ``headless_ok``: a run that only saves a screenshot falls back to the offscreen platform."""
    diagnosis = desktop_check.diagnose()
    if not diagnosis.ok:
        if not headless_ok:
            print(desktop_check.explain(diagnosis), file=sys.stderr)
            return None
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    restore = desktop_check.install_fatal_handler()
    app = QApplication([sys.argv[0]])
    restore()
    return app


def _methods(text: str | None) -> list[str] | str:
    if not text:
        return []
    methods = list(METHODS) if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        return f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}"
    return methods


def select_model(window: MainWindow, name_or_path: str) -> bool:
    """Choose a bundled model by name, or add and choose a user model from its manifest."""
    if window.model_panel.select_model(name_or_path):
        return True
    try:
        manifest = resolve_model(name_or_path)
    except ManifestError:
        return False
    return window.session.model.add(manifest)


def _after_image(window: MainWindow, action) -> None:
    def fire(image) -> None:
        window.state.events.image.disconnect(fire)
        action()

    window.state.events.image.connect(fire)


def _report_first_image(window: MainWindow, app: QApplication) -> None:
    window.repaint()  # paint now, so the line below means "on screen"
    print("first image shown", flush=True)
    window.close()
    app.quit()


def _after_prediction(window: MainWindow, action) -> None:
    def fire(_job, kind, _payload) -> None:
        if kind == "prediction":
            window.runner.result.disconnect(fire)
            QTimer.singleShot(0, action)

    window.runner.result.connect(fire)


class HeadlessRun(QObject):
    """Drives the window through one scripted session and saves a screenshot of it and its
    exports."""

    def __init__(self, window: MainWindow, app: QApplication, args, paths, annotation, methods):
        super().__init__(window)
        self.window, self.app, self.args = window, app, args
        self.paths, self.annotation, self.methods = paths, annotation, methods
        self.code = 1
        self.ran = False

    def exec(self) -> int:
        window = self.window
        if not self.paths:
            args = self.args
            flag = "--screenshot" if args.screenshot else "--export" if args.export else "--export-native"
            print(f"{flag} needs something to open: PATH... or --demo", file=sys.stderr)
            return 2
        window.show()
        window.runner.result.connect(self._on_result)
        window.runner.finished.connect(self._on_finished)
        window.maps_shown.connect(self._on_maps_shown)
        window.session.explanation.series_explained.connect(
            lambda *_: QTimer.singleShot(0, self._on_maps_shown)
        )
        window.scores_shown.connect(self._on_scores_shown)
        window.pacs.error.connect(self._fail)
        QTimer.singleShot(round(self.args.timeout * 1000), lambda: self._fail("timed out"))
        window.open_paths(self.paths)
        self.app.exec()
        return self.code

    def _on_result(self, job, kind, payload) -> None:
        if kind == "loaded" and self.annotation and not self.window.session.annotation.load(self.annotation):
            self._fail(self.window.errors[-1])
        elif kind == "failed":
            self._fail(payload[1])
        elif kind == "discovered" and not payload.series:
            self._fail("no images found in " + ", ".join(self.paths))
        elif kind == "prediction" and not self.ran:
            self.ran = True
            labels = self.window.session.model.labels
            if self.args.target:
                if self.args.target not in labels:
                    self._fail(f"--target {self.args.target!r} is not a label: {', '.join(labels)}")
                    return
                self.window.state.target = self.args.target
            QTimer.singleShot(0, self._run)

    def _run(self) -> None:
        window = self.window
        if self.args.explain_series:
            if window.session.explanation.explain_series(self.methods or None, show=True) is None:
                self._fail("nothing to run: choose a model and open a series")
        elif window.run_methods(self.methods or None) is None and not window.state.layers:
            self._fail("nothing to run: choose a model and methods")

    def _on_finished(self, job, status: str) -> None:
        if status.startswith("failed"):
            self._fail(f"{job.description}: {status.removeprefix('failed: ')}")

    def _on_maps_shown(self) -> None:
        if self.args.layer:
            if self.window.state.layer(self.args.layer) is None:
                self._fail(f"--layer {self.args.layer} was not computed (add it to --methods)")
                return
            self.window.state.active_layer = self.args.layer
        if self.args.compare:
            self.window.tabs.setCurrentIndex(1)  # showing the panel starts the scoring
        elif self.args.layout == "mpr":
            window = self.window
            if window.mpr.crosshair.reformat is None:
                self._fail(f"--layout mpr: {window.mpr.crosshair.reason}")
                return
            active = window.state.active()
            if active is not None:
                window.mpr.crosshair.to_strongest(active)
            window.tabs.setCurrentWidget(window.mpr)
            QTimer.singleShot(500, self._save)
        else:
            QTimer.singleShot(300, self._save)  # let the last layer paint

    def _on_scores_shown(self) -> None:
        if self.args.compare:
            QTimer.singleShot(300, self._save)

    def _save(self) -> None:
        from viewer.io.atomic import write_bytes_new
        from viewer.ui import exports

        context = self.window.export_context()
        saved = []
        try:
            if out := self.args.screenshot:
                shot = exports.render_window(self.window, context)
                saved.append(write_bytes_new(out, exports.encode(shot, out.suffix or ".png")))
            # The menu's own exports, File > Export screenshot of the view / image at native resolution.
            for kind, out in (("view", self.args.export), ("native", self.args.export_native)):
                if out is not None:
                    saved.append(exports.save(kind, context, out))
        except (OSError, ValueError) as exc:
            self._fail(str(exc))
            return
        layers = ", ".join(layer.title for layer in self.window.state.layers)
        state = self.window.state
        print(f"saved {', '.join(map(str, saved))}: {state.target} ({state.model}); layers: {layers}")
        self.code = 0
        self._quit()

    def _fail(self, message: str) -> None:
        if self.code == 0:
            return
        what = "screenshot" if self.args.screenshot else "export"
        print(f"{what} failed: {message}", file=sys.stderr)
        self.code = 1
        self._quit()

    def _quit(self) -> None:
        self.window.close()
        self.app.quit()
