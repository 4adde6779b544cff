"""The main window: menus, docks and the canvas, wired to the state and the background worker."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QTabWidget,
    QWidget,
)

from viewer.explain.registry import METHODS
from viewer.explain.saliency_map import SaliencyMap
from viewer.inference.catalog import bundled_models
from viewer.inference.manifest import ManifestError, load_manifest
from viewer.io.annotations import Annotation, AnnotationError, Region, load_annotation
from viewer.io.errors import Problem
from viewer.io.presets import load_presets
from viewer.io.shapes import rasterize
from viewer.state import MapCache, SaliencyLayer, ViewerState, tasks
from viewer.state.layers import default_display
from viewer.state.overlay_text import corner_texts
from viewer.ui import exports
from viewer.ui.annotation_commands import AddRegion
from viewer.ui.canvas import ImageCanvas
from viewer.ui.comparison import ComparisonPanel
from viewer.ui.layer_panel import LayerPanel
from viewer.ui.model_panel import ModelPanel
from viewer.ui.preferences import PreferencesDialog, load_bindings
from viewer.ui.problems_panel import ProblemsPanel
from viewer.ui.shortcuts import ShortcutsDialog
from viewer.ui.study_browser import StudyBrowser
from viewer.ui.tag_browser import TagBrowser
from viewer.ui.worker import Job, JobRunner

MAX_RECENT = 10


class MainWindow(QMainWindow):
    """The viewer. ``settings`` holds recent studies, user models, window state and preferences."""

    maps_shown = Signal()  # an explanation job finished and its layers are on screen
    scores_shown = Signal()  # the comparison panel's numbers are up to date

    def __init__(self, settings: QSettings | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Saliency Viewer")
        self.setAcceptDrops(True)
        self.settings = settings or QSettings()
        self.state = ViewerState()
        self.cache = MapCache()
        self.store = tasks.ModelStore()
        self.runner = JobRunner(self)
        self.undo = QUndoStack(self)
        self._commands: list[AddRegion] = []
        self.discovery = None
        self.series_index = -1
        self.prediction = None  # probabilities of the current image, (frames, labels)
        self.labels: tuple[str, ...] = ()
        self._caution: str | None = None  # the model's caution about the image on screen
        self.user_models: dict[str, Path] = {}
        self._styles: dict[str, dict] = {}  # display settings per method, kept across targets
        self._explaining: list[str] = []
        self._done: list[str] = []
        self.errors: list[str] = []  # what went wrong, for the status bar and headless runs
        self._window_actions: list[QAction] = []
        self.window_menu = None

        self.bindings = load_bindings(self.settings)
        self.canvas = ImageCanvas(self.state, self.bindings)
        self.canvas.setObjectName("canvas")
        self.comparison = ComparisonPanel(self.state, self.runner, self.store)
        self.comparison.settings = self.settings
        self.tabs = QTabWidget()
        self.tabs.setObjectName("tabs")
        self.tabs.addTab(self.canvas, "Image")
        self.tabs.addTab(self.comparison, "Compare")
        self.setCentralWidget(self.tabs)

        self.browser = StudyBrowser()
        self.model_panel = ModelPanel(self.state)
        self.layer_panel = LayerPanel(self.state)
        self.problems = ProblemsPanel()
        self.tags = TagBrowser()
        self.docks = {
            "studies": self._dock("Studies", self.browser, Qt.DockWidgetArea.LeftDockWidgetArea),
            "model": self._dock("Model and methods", self.model_panel, Qt.DockWidgetArea.RightDockWidgetArea),
            "layers": self._dock("Layers", self.layer_panel, Qt.DockWidgetArea.RightDockWidgetArea),
            "problems": self._dock("Problems", self.problems, Qt.DockWidgetArea.BottomDockWidgetArea),
            "tags": self._dock("DICOM tags", self.tags, Qt.DockWidgetArea.BottomDockWidgetArea),
        }
        self.tabifyDockWidget(self.docks["problems"], self.docks["tags"])
        self.docks["problems"].raise_()
        self.docks["tags"].hide()
        self.docks["problems"].hide()

        self.cursor_label = QLabel()
        self.cursor_label.setObjectName("cursor_readout")
        self.busy = QProgressBar()
        self.busy.setMaximumWidth(160)
        self.busy.setRange(0, 1000)
        self.busy.hide()
        self.statusBar().addPermanentWidget(self.cursor_label)
        self.statusBar().addPermanentWidget(self.busy)

        self._build_menus()
        self._connect()
        self._load_models()
        self._restore()

    # --- construction -------------------------------------------------------------------------
    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.split()[0].lower()}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, menu, text: str, slot, shortcut: str | QKeySequence | None = None, tip: str = ""):
        action = QAction(text, menu)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setToolTip(tip or text)
        action.setStatusTip(tip or text)
        action.triggered.connect(slot)
        menu.addAction(action)
        self.addAction(action)  # shortcuts work even when the menu bar is hidden
        if menu is self.window_menu:
            self._window_actions.append(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self._action(file, "Open file(s)...", self.ask_open_files, QKeySequence.StandardKey.Open)
        self._action(file, "Open folder...", self.ask_open_folder, "Ctrl+Shift+O")
        self.recent_menu = file.addMenu("Open recent")
        file.addSeparator()
        self._action(file, "Load annotation...", self.ask_load_annotation, "Ctrl+L")
        self._action(file, "Save annotation as JSON...", lambda: self.ask_save_annotation("json"))
        self._action(file, "Save annotation as DICOM SEG...", lambda: self.ask_save_annotation("seg"))
        file.addSeparator()
        self._action(file, "Export screenshot of the view...", self.ask_export_view, "Ctrl+E")
        self._action(file, "Export image at native resolution...", self.ask_export_native, "Ctrl+Shift+E")
        self._action(file, "Export contact sheet of all methods...", self.ask_export_sheet)
        self._action(file, "Copy view to clipboard", self.copy_view, "Ctrl+Shift+C")
        self._action(
            file,
            "Export map as DICOM (Parametric Map or Segmentation)...",
            lambda: self.ask_export_dicom("pm"),
        )
        self._action(file, "Export view as DICOM Secondary Capture...", lambda: self.ask_export_dicom("sc"))
        self.show_phi = QAction("Show patient identifiers in exports", self, checkable=True)
        self.show_phi.setChecked(self.settings.value("export/show_phi", False, type=bool))
        self.show_phi.toggled.connect(lambda on: self.settings.setValue("export/show_phi", on))
        file.addAction(self.show_phi)
        file.addSeparator()
        self._action(file, "Quit", self.close, QKeySequence.StandardKey.Quit)

        edit = bar.addMenu("&Edit")
        undo = self.undo.createUndoAction(self, "Undo")
        undo.setShortcut(QKeySequence.StandardKey.Undo)
        redo = self.undo.createRedoAction(self, "Redo")
        redo.setShortcut(QKeySequence.StandardKey.Redo)
        edit.addActions([undo, redo])
        edit.addSeparator()
        self._action(edit, "Preferences...", self.show_preferences, QKeySequence.StandardKey.Preferences)
        edit.addSeparator()
        tools = QActionGroup(self)
        tools.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
        self.tool_actions = {}
        for tool, key in (("rectangle", "Shift+R"), ("ellipse", "Shift+E"), ("polygon", "Shift+P")):
            action = QAction(f"Draw {tool}", self, checkable=True)
            action.setShortcut(QKeySequence(key))
            action.setToolTip(f"Draw a {tool} of the target label with the left button ({key})")
            action.toggled.connect(lambda on, t=tool: self.set_tool(t if on else ""))
            tools.addAction(action)
            edit.addAction(action)
            self.addAction(action)
            self.tool_actions[tool] = action

        view = bar.addMenu("&View")
        self._action(view, "Fit to window", self.canvas.fit, "=")
        self._action(view, "Actual size (1:1)", self.canvas.actual_size, "Ctrl+1")
        self._action(view, "Zoom in", lambda: self.canvas.zoom_by(1.25), "+")
        self._action(view, "Zoom out", lambda: self.canvas.zoom_by(0.8), "-")
        self._action(view, "Reset view and window", self.reset_view, "R")
        view.addSeparator()
        self._action(view, "Next slice", lambda: self.state.step_frame(1), "Down")
        self._action(view, "Previous slice", lambda: self.state.step_frame(-1), "Up")
        self._action(view, "Next slice (fast)", lambda: self.state.step_frame(5), "PgDown")
        self._action(view, "Previous slice (fast)", lambda: self.state.step_frame(-5), "PgUp")
        self._action(view, "First slice", lambda: self.state.set_frame(0), "Home")
        self._action(view, "Last slice", lambda: self.state.set_frame(10**9), "End")
        view.addSeparator()
        self._action(view, "Toggle corner text", self._toggle_corners, "T")
        self._action(view, "Toggle annotation", self._toggle_annotation, "A")
        self._action(view, "Annotation outline / filled", self._toggle_fill, "Shift+A")
        self._action(view, "Toggle selected layer", self._toggle_active_layer, "V")
        self._action(view, "Hide or show all layers", self._toggle_all_layers, "H")
        self.solo = QAction("Show only the selected layer", self, checkable=True)
        self.solo.setShortcut(QKeySequence("S"))
        self.solo.setChecked(self.settings.value("layers/solo", True, type=bool))
        self.solo.toggled.connect(self._on_solo)
        view.addAction(self.solo)
        self.addAction(self.solo)
        self._action(view, "Next layer", lambda: self._cycle_layer(1), "Ctrl+Down")
        self._action(view, "Previous layer", lambda: self._cycle_layer(-1), "Ctrl+Up")
        self._action(view, "Comparison panel", self._toggle_compare, "C")
        view.addSeparator()
        for dock in self.docks.values():
            view.addAction(dock.toggleViewAction())

        self.window_menu = bar.addMenu("&Window")
        self._build_window_menu()
        model = bar.addMenu("&Model")
        self._action(model, "Add model (manifest.toml)...", self.ask_add_model)
        self._action(model, "Model card...", self.show_model_card)
        self._action(model, "Check model...", self.check_model)
        self._action(model, "Run methods", self.run_methods, "Ctrl+R")
        self._action(model, "Cancel", self.cancel, "Esc")

        tools = bar.addMenu("&Tools")
        self._action(tools, "Evaluate folder...", self.evaluate_folder)

        help_menu = bar.addMenu("&Help")
        self._action(
            help_menu, "Keyboard and mouse...", self.show_shortcuts, QKeySequence.StandardKey.HelpContents
        )
        self._action(help_menu, "About", self._about)
        self._action(help_menu, "Search DICOM tags", self._focus_tags, "Ctrl+F")

    def _connect(self) -> None:
        self.runner.result.connect(self._on_result)
        self.runner.progressed.connect(self._on_progress)
        self.runner.finished.connect(self._on_finished)
        self.browser.series_chosen.connect(self.open_series)
        self.model_panel.model_chosen.connect(self._on_model_chosen)
        self.model_panel.add_model_requested.connect(self.ask_add_model)
        self.model_panel.card_requested.connect(self.show_model_card)
        self.model_panel.run_requested.connect(self.run_methods)
        self.model_panel.cancel_requested.connect(self.cancel)
        self.problems.count_changed.connect(self._on_problem_count)
        self.canvas.vb.window_dragged.connect(self._on_window_drag)
        self.canvas.vb.slice_scrolled.connect(self.state.step_frame)
        self.canvas.vb.shape_finished.connect(self._on_shape)
        self.canvas.cursor_moved.connect(self._on_cursor)
        self.canvas.view_changed.connect(self._update_corners)
        events = self.state.events
        events.image.connect(self._on_image)
        events.frame.connect(self._on_frame)
        events.voi.connect(self._update_corners)
        events.invert.connect(self._update_corners)
        events.target.connect(self._on_target)
        events.active_layer.connect(lambda *_: self._on_solo(self.solo.isChecked()))
        events.show_corners.connect(self.canvas.corners.set_visible)
        self.comparison.scores_shown.connect(self.scores_shown)

    def _load_models(self) -> None:
        stored = self.settings.value("models/user", [], type=list) or []
        for path in stored:
            try:
                manifest = load_manifest(path)
            except (ManifestError, OSError):
                continue  # a model removed since: forget it quietly
            self.user_models[manifest.name] = Path(path)
        models = {**bundled_models(), **self.user_models}
        current = str(self.settings.value("models/current", ""))
        self.model_panel.set_models(models, current if current in models else "")
        self.state.model = self.model_panel.models.currentText()
        self.comparison.manifest = self.model_panel.current_manifest()

    def _restore(self) -> None:
        geometry = self.settings.value("window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self._first_size()
        layout = self.settings.value("window/state")
        if layout is not None:
            self.restoreState(layout)
        self.model_panel.run_on_open.setChecked(self.settings.value("methods/run_on_open", False, type=bool))
        methods = self.settings.value("methods/checked", None, type=list)
        if methods:
            self.model_panel.set_checked_methods([m for m in methods if m in METHODS])
        self._refresh_recent()

    def _first_size(self) -> None:
        """1400 x 900 where the screen has room; on a smaller screen (1280 x 800 laptops) 95 % of
        its free area, so no edge is off-screen."""
        screen = self.screen() or QApplication.primaryScreen()
        free = screen.availableGeometry() if screen is not None else None
        if free is None:
            self.resize(1400, 900)
            return
        self.place(min(1400, round(free.width() * 0.95)), min(900, round(free.height() * 0.95)))

    def place(self, width: int, height: int) -> None:
        """Size the window and centre it on its screen's free area (never above or left of it)."""
        self.resize(width, height)
        screen = self.screen() or QApplication.primaryScreen()
        if screen is not None:
            free = screen.availableGeometry()
            x = free.x() + max(0, (free.width() - width) // 2)
            y = free.y() + max(0, (free.height() - height) // 2)
            self.move(x, y)

    def closeEvent(self, event) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.setValue("methods/run_on_open", self.model_panel.run_on_open.isChecked())
        self.settings.setValue("methods/checked", self.model_panel.checked_methods())
        self.settings.setValue("models/current", self.model_panel.models.currentText())
        self.runner.shutdown()
        super().closeEvent(event)

    # --- opening --------------------------------------------------------------------------
    def open_paths(self, paths: list[str | Path]) -> Job:
        paths = [str(p) for p in paths]
        self.problems.clear_problems()
        self._remember_recent(paths)
        self.statusBar().showMessage(f"Opening {', '.join(Path(p).name for p in paths)}...")
        self.busy.setValue(0)
        self.busy.show()
        self.runner.cancel("explain")
        self.runner.cancel("load")
        return self.runner.submit(Job("open", lambda job: tasks.open_paths(job, paths), "Opening"))

    def open_series(self, index: int) -> None:
        if self.discovery is None or not 0 <= index < len(self.discovery.series):
            return
        if index == self.series_index:
            return
        series = self.discovery.series[index]
        self.runner.cancel("explain")
        # Its own lane: choosing a series must not cancel the thumbnails still being made.
        self.runner.submit(Job("load", lambda job: tasks.load(job, series, index), "Loading"))

    def ask_open_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self,
            "Open images",
            self._last_dir(),
            "Images (*.dcm *.DCM *.zip *.png *.jpg *.jpeg *.tif *.tiff DICOMDIR *);;All files (*)",
        )
        if files:
            self.open_paths(files)

    def ask_open_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open folder", self._last_dir())
        if folder:
            self.open_paths([folder])

    def _last_dir(self) -> str:
        recent = self.settings.value("recent", [], type=list) or []
        return str(Path(recent[0]).parent) if recent else str(Path.home())

    def _remember_recent(self, paths: list[str]) -> None:
        recent = self.settings.value("recent", [], type=list) or []
        for path in reversed(paths):
            if path in recent:
                recent.remove(path)
            recent.insert(0, path)
        self.settings.setValue("recent", recent[:MAX_RECENT])
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.settings.value("recent", [], type=list) or []:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.open_paths([p]))
        self.recent_menu.setEnabled(not self.recent_menu.isEmpty())

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    # --- job results ------------------------------------------------------------------------
    def _on_result(self, job: Job, kind: str, payload) -> None:
        handler = getattr(self, f"_got_{kind}", None)
        if handler is not None:
            handler(payload)

    def _got_discovered(self, found) -> None:
        self.discovery = found
        self.series_index = -1
        self.browser.set_series(found.series)
        self.problems.add(found.problems)
        if not found.series:
            self._error(
                "No images found" + (f"; {len(found.problems)} file(s) skipped" if found.problems else "")
            )

    def _got_thumbnail(self, payload) -> None:
        index, picture = payload
        self.browser.set_thumbnail(index, picture)

    def _got_loaded(self, payload) -> None:
        index, image = payload
        # A new image cancels stale work: a map of the old one must never land on it.
        self.runner.cancel("explain")
        self.runner.cancel("scores")
        self.series_index = index
        self.browser.mark_current(index)
        self.prediction, self.labels = None, ()
        self.model_panel.clear_predictions()
        self.undo.clear()
        self._commands.clear()
        self._fit_model_to(image.modality)
        self.state.open(image)
        self._update_caution()
        self.problems.add(list(image.left_out))
        self.statusBar().showMessage(
            f"Opened {image.identity.modality or image.kind} {image.rows} x {image.columns}"
            + (f", {image.n_frames} images" if image.n_frames > 1 else ""),
            5000,
        )
        self._predict()

    def _got_failed(self, payload) -> None:
        _index, reason = payload
        self._error(f"Cannot open: {reason}")

    def _got_model(self, manifest) -> None:
        self.labels = tuple(manifest.labels)

    def _got_support(self, reasons: dict[str, str | None]) -> None:
        self.model_panel.set_method_support(reasons)

    def _got_prediction(self, prediction) -> None:
        self.prediction = prediction.probabilities
        self.labels = tuple(prediction.labels)
        self._update_caution()
        if self.state.target not in self.labels:
            self.state.target = self._top_label()
        self._show_predictions()

    def _got_map(self, payload: tuple[SaliencyMap, np.ndarray]) -> None:
        smap, indices = payload
        image = self.state.image
        if image is None or smap.target != self.state.target:
            return
        self.cache.put(id(image), self.state.model, smap)
        self._done.append(smap.method)
        self._add_to_layer(smap, indices)

    def _on_progress(self, job: Job, step: str, fraction: float) -> None:
        if job.lane == "explain":
            total = len(self._explaining)
            self.model_panel.show_progress(len(self._done), total, step, fraction)
            self.busy.setValue(round((len(self._done) + fraction) / max(total, 1) * 1000))
        elif job.lane in ("open", "load"):
            self.busy.setValue(round(fraction * 1000))
            self.statusBar().showMessage(f"{step}... {fraction:.0%}")

    def _on_finished(self, job: Job, status: str) -> None:
        self.busy.setVisible(self.runner.busy)
        if status.startswith("failed"):
            self._error(f"{job.description} failed: {status.removeprefix('failed: ')}")
        if job.lane == "explain":
            self.model_panel.set_running(False)
            if status == "done":
                seconds = sum(m.seconds for layer in self.state.layers for m in layer.maps.values())
                self.model_panel.status.setText(f"{len(self._done)} maps in {seconds:.1f} s")
                self.statusBar().showMessage(f"Computed {', '.join(self._titles(self._done))}", 5000)
                self.comparison.refresh()
                self.maps_shown.emit()
            elif status == "cancelled":
                self.model_panel.status.setText("Cancelled")
        elif job.lane == "open" and status == "done" and self.discovery is not None and not self.runner.busy:
            self.statusBar().showMessage(f"Opened {len(self.discovery.series)} series", 5000)

    def _error(self, message: str) -> None:
        self.errors.append(message)
        self.statusBar().showMessage(message, 15000)

    # --- model, target, methods ---------------------------------------------------------------
    def _on_model_chosen(self, manifest: str) -> None:
        self.state.model = self.model_panel.models.currentText()
        self.comparison.manifest = manifest
        self.runner.cancel("explain")
        self.state.layers.clear()
        self.prediction, self.labels = None, ()
        self.model_panel.clear_predictions()
        self._predict()

    def ask_add_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add model", self._last_dir(), "Model manifest (*.toml)")
        if path:
            self.add_model(Path(path))

    def add_model(self, manifest_path: str | Path) -> bool:
        """Add a user model by its manifest (remembered in the settings) and choose it."""
        try:
            manifest = load_manifest(manifest_path)
        except (ManifestError, OSError) as exc:
            self._error(f"Cannot add the model: {exc}")
            return False
        self.user_models[manifest.name] = Path(manifest_path).resolve()
        self.settings.setValue("models/user", [str(p) for p in self.user_models.values()])
        self.model_panel.set_models({**bundled_models(), **self.user_models}, manifest.name)
        self._on_model_chosen(str(self.user_models[manifest.name]))
        return True

    def _fit_model_to(self, modality: str) -> None:
        """Switch to a model made for this modality when the chosen one is not (a head CT model on
        a chest film would still answer, but nonsense)."""
        manifests = self._manifests()
        current = manifests.get(self.model_panel.models.currentText())
        if not modality or current is None or current.accepts(modality):
            return
        for name, manifest in manifests.items():
            if manifest.modalities and manifest.accepts(modality):
                self.model_panel.select_model(name)  # emits model_chosen
                self.statusBar().showMessage(f"Model {name} chosen for {modality} images", 8000)
                return

    def _manifests(self) -> dict:
        out = {}
        for i in range(self.model_panel.models.count()):
            try:
                out[self.model_panel.models.itemText(i)] = load_manifest(self.model_panel.models.itemData(i))
            except (ManifestError, OSError):
                continue
        return out

    def _predict(self) -> None:
        image, manifest = self.state.image, self.model_panel.current_manifest()
        if image is None or not manifest:
            return
        self.runner.submit(
            Job("predict", lambda job: tasks.predict(job, self.store, manifest, image), "Prediction")
        )

    def _top_label(self) -> str:
        row = self.prediction[self.state.frame] if self.prediction is not None else None
        return self.labels[int(np.argmax(row))] if row is not None else ""

    def _show_predictions(self) -> None:
        if self.prediction is not None and self.labels:
            self.model_panel.show_predictions(self.labels, self.prediction[self.state.frame])

    def show_model_card(self) -> None:
        from viewer.ui.model_card import show_model_card

        path = self.model_panel.current_manifest()
        if path:
            try:
                self._card = show_model_card(self, load_manifest(path))
            except ManifestError as exc:
                self._error(str(exc))

    def evaluate_folder(self) -> None:
        """A data-set evaluation with the model in use and the ticked methods, in the background."""
        from viewer.ui.evaluate_dialog import EvaluateDialog

        manifest = self.model_panel.current_manifest()
        if manifest:
            self._evaluate = EvaluateDialog(
                self, self.runner, self.store, manifest, self.model_panel.checked_methods()
            )
            self._evaluate.show()

    def check_model(self) -> None:
        """The model doctor's report on the model in use, run on the image on screen."""
        from viewer.ui.model_doctor import show_model_check

        path = self.model_panel.current_manifest()
        if path:
            self._check = show_model_check(self, self.runner, path, self.state.image)

    def caution(self) -> str | None:
        """The current model's caution about the image on screen (synthetic-only models on real
        images); exports carry it too."""
        return self._caution

    def _update_caution(self) -> None:
        """Work the caution out again: on a new image, and on each prediction (a new model)."""
        path = self.model_panel.current_manifest()
        self._caution = None
        if path and self.state.image is not None:
            with contextlib.suppress(ManifestError):  # reported where the model was chosen
                self._caution = load_manifest(path).caution(self.state.image)
        self.model_panel.show_caution(self._caution)

    def probability(self, label: str | None = None) -> float | None:
        label = label or self.state.target
        if self.prediction is None or label not in self.labels:
            return None
        return float(self.prediction[self.state.frame, self.labels.index(label)])

    def _on_target(self, _target: str) -> None:
        self.runner.cancel("explain")
        self._rebuild_layers()
        if self.model_panel.run_on_open.isChecked():
            self.run_methods()

    def _on_image(self, image) -> None:
        self.tags.show_source(image.frames[0].source if image is not None else "")
        self._build_window_menu()
        self._update_corners()

    def _on_frame(self, frame: int) -> None:
        image = self.state.image
        if image is not None:
            self.tags.show_source(image.frames[frame].source)
        self._show_predictions()
        self._rebuild_layers()
        self._update_corners()
        if self.model_panel.run_on_open.isChecked() and image is not None and image.n_frames > 1:
            self.run_methods()

    def run_methods(self, methods: list[str] | None = None) -> Job | None:
        image, target = self.state.image, self.state.target
        manifest = self.model_panel.current_manifest()
        if image is None or not manifest:
            self.statusBar().showMessage("Open an image and choose a model first", 5000)
            return None
        if not target:
            self.statusBar().showMessage("Waiting for the model's prediction...", 5000)
            QTimer.singleShot(200, lambda: self.run_methods(methods) if self.state.target else None)
            return None
        methods = methods or self.model_panel.checked_methods()
        missing = self.cache.missing(id(image), self.state.frame, self.state.model, target, methods)
        self._rebuild_layers()
        if not missing:
            self.maps_shown.emit()
            return None
        self._explaining, self._done = missing, []
        frame, seed = self.state.frame, int(self.settings.value("methods/seed", 0, type=int))
        job = Job(
            "explain",
            lambda job: tasks.explain_frame(job, self.store, manifest, image, frame, target, missing, seed),
            "Explanation",
        )
        self.model_panel.set_running(True)
        self.busy.show()
        self.model_panel.status.setText(f"Computing {len(missing)} methods...")
        return self.runner.submit(job)

    def cancel(self) -> None:
        if self.canvas.vb.tool:
            self.set_tool("")
            return
        self.runner.cancel("explain")
        self.runner.cancel("scores")
        self.model_panel.set_running(False)
        self.model_panel.status.setText("Cancelled")

    def _titles(self, methods: list[str]) -> list[str]:
        return [METHODS[m].title if m in METHODS else m for m in methods]

    # --- layers -----------------------------------------------------------------------------
    def _rebuild_layers(self) -> None:
        """Show the cached maps of this image, model and target (any slice)."""
        image = self.state.image
        wanted = []
        if image is not None and self.state.target:
            wanted = self.cache.find(id(image), self.state.model, self.state.target)
        current = {layer.method for layer in self.state.layers}
        keep = {m.method for m in wanted}
        for layer in [layer for layer in self.state.layers if layer.method not in keep]:
            self.state.layers.remove(layer)
        for layer in self.state.layers:
            layer.maps.clear()
        for smap in wanted:
            if smap.method in current:
                self.state.layer(smap.method).add(smap)
            else:
                self._add_to_layer(smap)
                current.add(smap.method)
        for layer in self.state.layers:
            layer.events.maps.emit(layer.maps, layer.maps)

    def _add_to_layer(self, smap: SaliencyMap, indices: np.ndarray | None = None) -> None:
        layer = self.state.layer(smap.method)
        if layer is None:
            style = self._styles.setdefault(smap.method, default_display(smap))
            layer = SaliencyLayer(smap.method, smap.convention, **style)
            for name in ("visible", "opacity", "colormap", "low", "high"):
                getattr(layer.events, name).connect(
                    lambda value, *_, n=name, m=smap.method: self._styles[m].__setitem__(n, value)
                )
            layer.add(smap, indices)
            self.state.layers.append(layer)
            if not self.state.active_layer or self.state.layer(self.state.active_layer) is None:
                self.state.active_layer = smap.method
            else:
                # The newest map is what the user waits for: show it on top, selected.
                self.state.active_layer = smap.method
        else:
            layer.add(smap, indices)

    def _toggle_active_layer(self) -> None:
        layer = self.state.active()
        if layer is not None:
            layer.visible = not layer.visible

    def _toggle_all_layers(self) -> None:
        show = not any(layer.visible for layer in self.state.layers)
        for layer in self.state.layers:
            layer.visible = show

    def _on_solo(self, solo: bool) -> None:
        """With "only the selected layer" on, choosing a layer shows it and hides the others, so
        switching methods is one click (or Ctrl+Up/Down) and never a recompute."""
        self.settings.setValue("layers/solo", solo)
        if solo and self.state.active() is not None:
            for layer in self.state.layers:
                layer.visible = layer.method == self.state.active_layer

    def _cycle_layer(self, step: int) -> None:
        methods = [layer.method for layer in self.state.layers]
        if methods:
            index = methods.index(self.state.active_layer) if self.state.active_layer in methods else -step
            self.state.active_layer = methods[(index + step) % len(methods)]

    # --- window and view --------------------------------------------------------------------
    def _on_window_drag(self, dx: float, dy: float) -> None:
        low, high = self.state.value_range()
        step = (high - low) * self.bindings.window_sensitivity
        sign = -1.0 if self.bindings.level_up_when_dragging_up else 1.0
        self.state.adjust_window(d_center=sign * dy * step, d_width=dx * step)

    def reset_view(self) -> None:
        self.state.reset_window()
        if self.state.image is not None:
            self.state.invert = self.state.image.invert
        self.canvas.fit()

    def _build_window_menu(self) -> None:
        menu = self.window_menu
        for action in self._window_actions:
            self.removeAction(action)
        self._window_actions = []
        menu.clear()
        image = self.state.image
        self._action(menu, "From file", self._window_from_file, "W")
        self._action(menu, "Auto (percentiles)", self._window_auto, "0")
        self._action(menu, "Invert", lambda: setattr(self.state, "invert", not self.state.invert), "I")
        if image is None:
            return
        for window in image.windows[1:]:
            self._action(
                menu, f"File: {window.label()}", lambda _=False, w=window: setattr(self.state, "voi", w)
            )
        presets = load_presets().presets(image.modality)
        if presets:
            menu.addSeparator()
        for preset in presets:
            key = str(preset.key) if preset.key else None
            self._action(
                menu,
                preset.window.label(),
                lambda _=False, w=preset.window: setattr(self.state, "voi", w),
                key,
            )

    def _window_from_file(self) -> None:
        self.state.reset_window()

    def _window_auto(self) -> None:
        if self.state.image is not None:
            self.state.voi = self.state.auto_window_for(self.state.image, self.state.frame)

    def _toggle_corners(self) -> None:
        self.state.show_corners = not self.state.show_corners

    def _toggle_annotation(self) -> None:
        self.state.show_annotation = not self.state.show_annotation

    def _toggle_fill(self) -> None:
        self.state.annotation_style = "fill" if self.state.annotation_style == "outline" else "outline"

    def _toggle_compare(self) -> None:
        self.tabs.setCurrentIndex(1 if self.tabs.currentIndex() == 0 else 0)

    def _update_corners(self, *_args) -> None:
        self.canvas.corners.set_texts(corner_texts(self.state, self.canvas.zoom()))

    def _on_cursor(self, where) -> None:
        image = self.state.image
        if where is None or image is None:
            self.cursor_label.setText("")
            return
        row, col = where
        value = image.frame(self.state.frame)[row, col]
        if image.is_color:
            text = f"x {col}  y {row}  RGB {tuple(int(v) for v in value)}"
        else:
            text = f"x {col}  y {row}  {float(value):.1f} {image.units}".rstrip()
        layer = self.state.active()
        if layer is not None and layer.visible:
            values = layer.values(self.state.frame)
            if values is not None:
                text += f"  |  {layer.title} {float(values[row, col]):+.3f}"
        self.cursor_label.setText(text)

    def _on_problem_count(self, count: int) -> None:
        self.docks["problems"].setWindowTitle(f"Problems ({count})" if count else "Problems")
        if count:
            self.docks["problems"].show()
            self.docks["problems"].raise_()

    def _focus_tags(self) -> None:
        self.docks["tags"].show()
        self.docks["tags"].raise_()
        self.tags.filter.setFocus()

    # --- annotations ------------------------------------------------------------------------
    def ask_load_annotation(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Load annotation",
            self._last_dir(),
            "Annotations (*.json *.dcm *.csv *.png *.nii *.nii.gz);;All files (*)",
        )
        if path:
            self.load_annotation(path)

    def load_annotation(self, path: str | Path) -> bool:
        image = self.state.image
        try:
            annotation = load_annotation(path)
        except AnnotationError as exc:
            self._error(str(exc))
            return False
        if image is not None and not annotation.matches(image):
            self._error(
                f"{Path(path).name} does not refer to this image (no SOP Instance UID or file name in common)"
            )
            return False
        self.state.annotation = annotation
        self.state.show_annotation = True
        self.statusBar().showMessage(f"Annotation {Path(path).name}: {', '.join(annotation.labels)}", 5000)
        matcher = self.comparison.matcher
        if (
            image is not None
            and matcher is not None
            and (unmatched := matcher.unmatched(annotation.labels_on(image)))
        ):
            reason = (
                f"labels {', '.join(unmatched)} match none of the model's labels "
                f"({', '.join(matcher.labels)}); add them to the manifest's [label_aliases] if they mean one"
            )
            self._error(f"{Path(path).name}: {reason}")
            self.problems.add([Problem(str(path), reason)])
        self.comparison.refresh()
        return True

    def set_tool(self, tool: str) -> None:
        self.canvas.vb.tool = tool
        for name, action in self.tool_actions.items():
            action.blockSignals(True)
            action.setChecked(name == tool)
            action.blockSignals(False)
        if tool:
            self.statusBar().showMessage(
                f"Drawing {tool}s of '{self.state.target or 'finding'}': drag with the left button; Esc stops"
            )

    def _on_shape(self, tool: str, points) -> None:
        image = self.state.image
        if image is None:
            return
        try:
            mask = rasterize(tool, points, image.rows, image.columns)
        except ValueError as exc:
            self.statusBar().showMessage(str(exc), 5000)
            return
        if not mask.any():
            return
        info = image.frames[self.state.frame]
        region = Region(
            self.state.target or "finding",
            mask=mask,
            sop_instance_uid=info.sop_instance_uid,
            file=Path(info.source.split("!/")[-1]).stem,
        )
        if self.state.annotation is None:
            self.state.annotation = Annotation(source="drawn in the viewer")
        command = AddRegion(self.state, region, f"draw {tool}")
        # Keep the Python object alive as long as the stack may call its undo/redo overrides.
        self._commands.append(command)
        self.undo.push(command)
        self.comparison.refresh()

    def ask_save_annotation(self, kind: str) -> None:
        from viewer.io import annotation_writer

        image, annotation = self.state.image, self.state.annotation
        if image is None or annotation is None or not annotation.regions:
            self.statusBar().showMessage("Nothing to save: load or draw an annotation first", 5000)
            return
        suffix = ".json" if kind == "json" else ".dcm"
        path, _ = QFileDialog.getSaveFileName(
            self, "Save annotation", str(Path(self._last_dir()) / f"annotation{suffix}")
        )
        if not path:
            return
        writer = (
            annotation_writer.save_annotation_json
            if kind == "json"
            else annotation_writer.save_annotation_seg
        )
        try:
            writer(annotation, image, Path(path))
        except (OSError, ValueError) as exc:
            self._error(f"Cannot save {path}: {exc}")
            return
        self.statusBar().showMessage(f"Saved {path}", 5000)

    # --- exports ----------------------------------------------------------------------------
    def caption(self, method: str | None = None) -> str:
        return exports.caption(self, method)

    def ask_export_view(self) -> None:
        path = self._ask_image_path("view")
        if path:
            self._report_export(lambda: exports.save_view(self, path))

    def ask_export_native(self) -> None:
        path = self._ask_image_path("image")
        if path:
            self._report_export(lambda: exports.save_native(self, path))

    def ask_export_sheet(self) -> None:
        path = self._ask_image_path("contact_sheet")
        if path:
            self._report_export(lambda: exports.save_contact_sheet(self, path))

    def ask_export_dicom(self, kind: str) -> None:
        name = "saliency_pm.dcm" if kind == "pm" else "saliency_sc.dcm"
        path, _ = QFileDialog.getSaveFileName(
            self, "Export DICOM", str(Path(self._last_dir()) / name), "DICOM (*.dcm)"
        )
        if path:
            self._report_export(lambda: exports.save_dicom(self, kind, Path(path)))

    def copy_view(self) -> None:
        exports.copy_view(self)
        self.statusBar().showMessage("View copied to the clipboard", 3000)

    def _ask_image_path(self, stem: str) -> Path | None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export", str(Path(self._last_dir()) / f"{stem}.png"), "PNG (*.png);;JPEG (*.jpg *.jpeg)"
        )
        return Path(path) if path else None

    def _report_export(self, write) -> None:
        try:
            path = write()
        except (OSError, ValueError) as exc:
            self._error(f"Export failed: {exc}")
            QMessageBox.warning(self, "Export failed", str(exc))
            return
        self.statusBar().showMessage(f"Wrote {path}", 8000)

    # --- help -------------------------------------------------------------------------------
    def show_preferences(self) -> None:
        PreferencesDialog(self.bindings, self.settings, self).exec()

    def show_shortcuts(self) -> None:
        ShortcutsDialog(self).exec()

    def _about(self) -> None:
        from viewer import __version__

        QMessageBox.about(
            self,
            "Saliency Viewer",
            f"Saliency Viewer {__version__}\nSee where a CNN is looking, next to the radiologist's "
            "annotation.\nFor research and demonstration; not for clinical use.",
        )

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._update_corners()
