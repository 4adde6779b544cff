"""The main window: the canvas and the docks, assembled around one :class:`ViewerSession`.

The session holds the application's logic; the widgets here are views of it. Menus come from the
action table (``ui/actions.py``), remembered values from ``ui/settings.py``, drawing and the
annotation dialogs from ``ui/annotation_tools.py`` and the export dialogs from
``ui/export_dialogs.py`` (rendering in ``ui/exports.py``).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QFrame,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from viewer.io.formats import file_patterns
from viewer.io.pacs import is_study_url
from viewer.io.safe_text import printable
from viewer.state.model_choice import ModelCatalog
from viewer.state.overlay_text import corner_texts, cursor_text
from viewer.state.pacs_session import PacsSession
from viewer.state.session import ViewerSession
from viewer.ui import settings as saved
from viewer.ui.actions import build_menus, build_window_menu
from viewer.ui.annotation_tools import AnnotationTools
from viewer.ui.canvas import ImageCanvas
from viewer.ui.cine import Cine
from viewer.ui.comparison import ComparisonPanel
from viewer.ui.export_dialogs import ExportDialogs
from viewer.ui.exports import ExportContext
from viewer.ui.layer_panel import LayerPanel
from viewer.ui.measure_tools import MeasureTools
from viewer.ui.model_panel import ModelPanel
from viewer.ui.model_setup import ModelAdding
from viewer.ui.mpr_view import MprView
from viewer.ui.pacs_commands import PacsCommands
from viewer.ui.panels import PANELS
from viewer.ui.preferences import PreferencesDialog, load_bindings
from viewer.ui.problems_panel import ProblemsPanel
from viewer.ui.shortcuts import ShortcutsDialog
from viewer.ui.slice_strip import SliceStrip
from viewer.ui.study_browser import StudyBrowser
from viewer.ui.tag_browser import TagBrowser
from viewer.ui.worker import JobRunner


class MainWindow(QMainWindow):
    """The viewer. ``settings`` holds recent studies, user models, window state and preferences."""

    maps_shown = Signal()  # an explanation finished and its layers are on screen
    scores_shown = Signal()  # the comparison panel's numbers are up to date

    def __init__(self, settings: QSettings | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Saliency Viewer")
        self.setAcceptDrops(True)
        self.settings = settings or QSettings()
        self.runner = JobRunner(self)
        self.session = ViewerSession(self.runner, catalog=ModelCatalog(saved.user_models(self.settings)))
        saved.restore_session(self.settings, self.session)
        self.state = self.session.state
        # Retrieval has a thread of its own: a long one must not hold up loading or explaining.
        self.pacs_runner = JobRunner(self)
        self.pacs = PacsSession(self.pacs_runner, self.session)

        self.bindings = load_bindings(self.settings)
        self.canvas = ImageCanvas(self.state, self.bindings)
        self.canvas.setObjectName("canvas")
        self.comparison = ComparisonPanel(self.session)
        self.comparison.settings = self.settings
        self.tabs = QTabWidget()
        self.tabs.setObjectName("tabs")
        self.tabs.addTab(self.canvas, "Image")
        self.tabs.addTab(self.comparison, "Compare")
        self.mpr = MprView(self.state, self.bindings)
        self.tabs.addTab(self.mpr, "MPR")
        self.cine = Cine(self.state, self.settings, self)
        self.strip = SliceStrip(self.session)
        centre = QWidget()
        column = QVBoxLayout(centre)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addWidget(self.tabs)
        column.addWidget(self.strip)
        self.setCentralWidget(centre)

        self.browser = StudyBrowser()
        self.model_panel = ModelPanel(self.session)
        self.layer_panel = LayerPanel(self.state)
        self.problems = ProblemsPanel()
        self.tags = TagBrowser()
        left, right, bottom = (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea,
                               Qt.DockWidgetArea.BottomDockWidgetArea)  # fmt: skip
        self.docks = {
            "studies": self._dock("Studies", self.browser, left),
            "model": self._dock("Model and methods", self.model_panel, right, scroll=True),
            "layers": self._dock("Layers", self.layer_panel, right, scroll=True),
            "problems": self._dock("Problems", self.problems, bottom),
            "tags": self._dock("DICOM tags", self.tags, bottom),
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

        self.annotations = AnnotationTools(self, self.session, self.canvas.vb, self.last_folder, self.say)
        self.exporter = ExportDialogs(self, self.export_context, self.last_folder, self.say)
        self.pacs_ui = PacsCommands(self, self.session, self.pacs, self.export_context, self.say)
        self.model_adding = ModelAdding(self, self.session, self.runner, self.last_folder)
        self.actions_by_id, self.menus = build_menus(self, self.session)
        self.annotations.install(self.menus["edit"])
        self.measure = MeasureTools(
            self, self.state, self.canvas.vb, self.last_folder, self.say, self.session.report_error
        )
        self.measure.install(self.menus["tools"], self.menus["file"], self.annotations.tools)
        self.mpr.measure_with(self.measure)
        self.pacs_ui.measurements = self.measure.book
        self.docks["measurements"] = self._dock("Measurements", self.measure.panel, right)
        self.docks["measurements"].hide()
        areas = {"left": left, "right": right, "bottom": bottom}
        for panel in PANELS.values():  # panels registered by extensions (viewer.ui.panels)
            self.docks[panel.id] = self._dock(
                panel.title, panel.make(self.session), areas[panel.area], name=panel.id
            )
            self.docks[panel.id].setVisible(panel.visible)
        for dock in self.docks.values():
            self.menus["view"].addAction(dock.toggleViewAction())
        self._bind_preferences()
        self._connect()
        self._restore_layout()

    # --- construction -------------------------------------------------------------------------
    def _dock(
        self, title: str, widget: QWidget, area: Qt.DockWidgetArea, *, scroll: bool = False, name: str = ""
    ) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{name or title.split()[0].lower()}")  # saved layouts find it by it
        if scroll:  # a column of panels shorter than their content scrolls instead of overlapping
            area_widget = QScrollArea()
            area_widget.setWidgetResizable(True)
            area_widget.setFrameShape(QFrame.Shape.NoFrame)
            area_widget.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
            bar = area_widget.verticalScrollBar().sizeHint().width()
            area_widget.setMinimumWidth(widget.minimumSizeHint().width() + bar)
            area_widget.setWidget(widget)
            widget = area_widget
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _bind_preferences(self) -> None:
        self.show_phi = self.actions_by_id["show_phi"]
        self.show_phi.setChecked(self.settings.value("export/show_phi", False, type=bool))
        self.show_phi.toggled.connect(lambda on: self.settings.setValue("export/show_phi", on))
        self.solo = self.actions_by_id["solo"]
        self.solo.setChecked(self.session.layers.solo)
        self.solo.toggled.connect(self._on_solo)
        self.actions_by_id["mpr_mip"].toggled.connect(self.mpr.set_mip)

    def _connect(self) -> None:
        session, events = self.session, self.state.events
        self.runner.finished.connect(lambda *_: self.busy.setVisible(self.runner.busy))
        session.discovered.connect(self._on_discovered)
        session.thumbnails.connect(lambda batch: self.browser.set_thumbnails(batch))
        session.opened.connect(lambda index, _image: self.browser.mark_current(index))
        session.progress.connect(self._on_progress)
        session.explain_progress.connect(self._on_explain_progress)
        session.explaining.connect(lambda on: self.busy.show() if on else None)
        session.maps_shown.connect(self._on_maps_shown)
        session.message.connect(self.say)
        session.error.connect(lambda message: self.say(message, 15000))
        session.trust_needed.connect(self.ask_trust)
        session.problems_found.connect(self.problems.add)
        session.problems_cleared.connect(self.problems.clear_problems)
        session.models_changed.connect(
            lambda: self.settings.setValue("models/user", [str(p) for p in session.catalog.user.values()])
        )
        self.browser.series_chosen.connect(session.open_series)
        self.model_panel.add_model_requested.connect(self.ask_add_model)
        self.model_panel.card_requested.connect(self.show_model_card)
        self.model_panel.run_requested.connect(self.run_methods)
        self.model_panel.cancel_requested.connect(self.cancel)
        self.problems.count_changed.connect(self._on_problem_count)
        self.canvas.vb.window_dragged.connect(self._on_window_drag)
        self.canvas.vb.slice_scrolled.connect(self.state.step_frame)
        self.mpr.window_dragged.connect(self._on_window_drag)
        self.cine.playing.connect(
            lambda on: self.say(f"Cine at {self.cine.fps} fps" if on else "Cine stopped", 3000)
        )
        self.cine.rate_changed.connect(lambda fps: self.say(f"Cine at {fps} fps", 3000))
        self.canvas.cursor_moved.connect(
            lambda where: self.cursor_label.setText(cursor_text(self.state, where))
        )
        self.canvas.view_changed.connect(self._update_corners)
        events.image.connect(self._on_image)
        events.frame.connect(self._on_frame)
        events.voi.connect(self._update_corners)
        events.invert.connect(self._update_corners)
        events.show_corners.connect(self.canvas.corners.set_visible)
        self.comparison.scores_shown.connect(self.scores_shown)

    def _restore_layout(self) -> None:
        geometry = self.settings.value("window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self._first_size()
        layout = self.settings.value("window/state")
        if layout is None or not self.restoreState(layout):
            # First run: the model panel (predictions, methods, Run) gets two thirds of the column.
            right = [self.docks["model"], self.docks["layers"]]
            self.resizeDocks(right, [640, 320], Qt.Orientation.Vertical)
        self._refresh_recent()
        self.window_menu_actions = build_window_menu(self, self.menus["window"], self.session)

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
        saved.save_session(self.settings, self.session)
        self.pacs_runner.shutdown()
        self.runner.shutdown()
        super().closeEvent(event)

    # --- status -----------------------------------------------------------------------------
    def say(self, message: str, milliseconds: int = 5000) -> None:
        # Messages quote file names, labels and reasons: shown printable, on the one status line.
        self.statusBar().showMessage(printable(message), milliseconds)

    @property
    def errors(self) -> list[str]:
        return self.session.errors

    def _on_progress(self, _lane: str, step: str, fraction: float) -> None:
        self.busy.show()
        self.busy.setValue(round(fraction * 1000))
        self.say(f"{step}... {fraction:.0%}", 0)

    def _on_explain_progress(self, done: int, total: int, step: str, fraction: float) -> None:
        self.busy.setValue(round((done + fraction) / max(total, 1) * 1000))

    def _on_maps_shown(self) -> None:
        self.comparison.refresh()
        self.maps_shown.emit()

    def _on_problem_count(self, count: int) -> None:
        self.docks["problems"].setWindowTitle(f"Problems ({count})" if count else "Problems")
        if count:
            self.docks["problems"].show()
            self.docks["problems"].raise_()

    # --- opening --------------------------------------------------------------------------
    def open_paths(self, paths: list[str | Path]):
        """Open files and folders; study URLs among them are retrieved from their PACS and
        opened as they arrive."""
        paths = [str(p) for p in paths]
        urls = [p for p in paths if is_study_url(p)]
        paths = [p for p in paths if not is_study_url(p)]
        if urls:
            job = self.pacs_ui.open_urls(urls)
            if not paths:
                return job
        saved.remember_recent(self.settings, paths)
        self._refresh_recent()
        self.busy.setValue(0)
        self.busy.show()
        return self.session.open_paths(paths)

    def ask_open_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open images", self.last_folder(), file_patterns())
        if files:
            self.open_paths(files)

    def ask_open_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open folder", self.last_folder())
        if folder:
            self.open_paths([folder])

    def last_folder(self) -> str:
        return saved.last_folder(self.settings)

    def _refresh_recent(self) -> None:
        menu = self.menus["recent"]
        menu.clear()
        for path in saved.recent(self.settings):
            menu.addAction(path).triggered.connect(lambda _=False, p=path: self.open_paths([p]))
        menu.setEnabled(not menu.isEmpty())

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    def _on_discovered(self, found) -> None:
        self.browser.set_series(found.series)

    def _on_image(self, image) -> None:
        self.tags.show_source(image.frames[0].source if image is not None else "")
        self.window_menu_actions = build_window_menu(self, self.menus["window"], self.session)
        self._update_corners()

    def _on_frame(self, frame: int) -> None:
        image = self.state.image
        if image is not None:
            self.tags.show_source(image.frames[frame].source)
        self._update_corners()

    # --- model and methods ----------------------------------------------------------------------
    def run_methods(self, methods: list[str] | None = None):
        return self.session.run_methods(methods)

    def explain_series(self):
        """The ticked methods on every slice, each map on one scale across the series (what the
        coronal and sagittal planes need to be read as one volume)."""
        self.busy.show()
        return self.session.explain_series(show=True)

    def cancel(self) -> None:
        if self.canvas.vb.tool:  # Esc first stops drawing or measuring
            self.annotations.set_tool("")
            self.measure.set_tool("")
            return
        self.session.cancel()

    def ask_add_model(self) -> None:
        self.model_adding.ask()

    def ask_trust(self, request) -> None:
        """A model file that can run more than tensor arithmetic loads only if the user says so."""
        from viewer.ui.model_card import ask_trust

        if ask_trust(self, request):
            self.session.trust_model(request)
        else:
            self.say(f"Not loaded: {request.what}", 15000)

    def show_model_card(self) -> None:
        from viewer.ui.model_card import show_model_card

        manifest = self.session.manifest()
        if manifest is not None:
            self._card = show_model_card(self, manifest)

    def evaluate_folder(self) -> None:
        """A data-set evaluation with the model in use and the ticked methods, in the background."""
        from viewer.ui.evaluate_dialog import EvaluateDialog

        manifest = self.session.manifest_path
        if manifest is not None:
            self._evaluate = EvaluateDialog(
                self, self.runner, self.session.store, str(manifest), self.session.methods
            )
            self._evaluate.show()

    def check_model(self) -> None:
        """The model doctor's report on the model in use, run on the image on screen."""
        from viewer.ui.model_doctor import show_model_check

        manifest = self.session.manifest_path
        if manifest is not None:
            self._check = show_model_check(self, self.runner, str(manifest), self.state.image)

    # --- view -------------------------------------------------------------------------------
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

    def window_auto(self) -> None:
        if self.state.image is not None:
            self.state.voi = self.state.auto_window_for(self.state.image, self.state.frame)

    def toggle(self, field: str) -> None:
        setattr(self.state, field, not getattr(self.state, field))

    def toggle_fill(self) -> None:
        self.state.annotation_style = "fill" if self.state.annotation_style == "outline" else "outline"

    def toggle_compare(self) -> None:
        self.tabs.setCurrentIndex(1 if self.tabs.currentIndex() == 0 else 0)

    def toggle_mpr(self) -> None:
        self.tabs.setCurrentWidget(self.canvas if self.tabs.currentWidget() is self.mpr else self.mpr)

    def _on_solo(self, solo: bool) -> None:
        self.settings.setValue("layers/solo", solo)
        self.session.layers.set_solo(solo)

    def _update_corners(self, *_args) -> None:
        self.canvas.corners.set_texts(corner_texts(self.state, self.canvas.zoom()))

    def focus_tags(self) -> None:
        self.docks["tags"].show()
        self.docks["tags"].raise_()
        self.tags.filter.setFocus()

    # --- exports ----------------------------------------------------------------------------
    def export_context(self) -> ExportContext:
        return ExportContext(self.session, self.canvas, hide_phi=not self.show_phi.isChecked())

    # --- help -------------------------------------------------------------------------------
    def show_preferences(self) -> None:
        PreferencesDialog(self.bindings, self.settings, self, edit_nodes=self.pacs_ui.edit_nodes).exec()

    def show_shortcuts(self) -> None:
        ShortcutsDialog(self).exec()

    def show_getting_started(self) -> None:
        from viewer.resources import resource_path
        from viewer.ui.model_card import show_markdown

        self._help = show_markdown(self, "Getting started", resource_path("help", "getting_started.md"))

    def show_about(self) -> None:
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
