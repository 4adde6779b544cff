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
    QLabel,
    QMainWindow,
    QProgressBar,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from viewer.io.safe_text import printable
from viewer.state.model_catalog import ModelCatalog
from viewer.state.overlay_text import cursor_text
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
from viewer.ui.help_commands import HelpCommands
from viewer.ui.layer_panel import LayerPanel
from viewer.ui.measure_tools import MeasureTools
from viewer.ui.model_commands import ModelCommands
from viewer.ui.model_output_items import ModelOutputView
from viewer.ui.model_panel import ModelPanel
from viewer.ui.mpr_view import MprView
from viewer.ui.open_commands import OpenCommands
from viewer.ui.pacs_commands import PacsCommands
from viewer.ui.panels import PANELS
from viewer.ui.preferences import load_bindings
from viewer.ui.problems_panel import ProblemsPanel
from viewer.ui.slice_strip import SliceStrip
from viewer.ui.study_browser import StudyBrowser
from viewer.ui.tag_browser import TagBrowser
from viewer.ui.view_commands import ViewCommands
from viewer.ui.window_layout import make_dock, place, restore_layout, save_layout
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
        self.mpr = MprView(self.session.crosshair, self.state, self.bindings)
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
            "studies": make_dock(self, "Studies", self.browser, left),
            "model": make_dock(self, "Model and methods", self.model_panel, right, scroll=True),
            "layers": make_dock(self, "Layers", self.layer_panel, right, scroll=True),
            "problems": make_dock(self, "Problems", self.problems, bottom),
            "tags": make_dock(self, "DICOM tags", self.tags, bottom),
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
        self.models = ModelCommands(self)
        self.opening = OpenCommands(self)
        self.view = ViewCommands(self)
        self.help = HelpCommands(self)
        self.actions_by_id, self.menus = build_menus(self, self.session)
        self.annotations.install(self.menus["edit"])
        self.measure = MeasureTools(self, self.session, self.canvas.vb, self.last_folder, self.say)
        self.measure.install(self.menus["tools"], self.menus["file"], self.annotations.tools)
        self.mpr.measure_with(self.measure)
        self.pacs_ui.measurements = self.session.measurements
        self.docks["measurements"] = make_dock(self, "Measurements", self.measure.panel, right)
        self.docks["measurements"].hide()
        self.outputs_view = ModelOutputView.install(self)  # the model's masks and boxes (issue 39)
        areas = {"left": left, "right": right, "bottom": bottom}
        for panel in PANELS.values():  # panels registered by extensions (viewer.ui.panels)
            self.docks[panel.id] = make_dock(
                self, panel.title, panel.make(self.session), areas[panel.area], name=panel.id
            )
            self.docks[panel.id].setVisible(panel.visible)
        for dock in self.docks.values():
            self.menus["view"].addAction(dock.toggleViewAction())
        self._bind_preferences()
        self._connect()
        self._restore_layout()

    # --- construction -------------------------------------------------------------------------
    def _bind_preferences(self) -> None:
        self.show_phi = self.actions_by_id["show_phi"]
        self.show_phi.setChecked(self.settings.value("export/show_phi", False, type=bool))
        self.show_phi.toggled.connect(lambda on: self.settings.setValue("export/show_phi", on))
        self.solo = self.actions_by_id["solo"]
        self.solo.setChecked(self.session.layers.solo)
        self.solo.toggled.connect(self.view.set_solo)
        self.actions_by_id["mpr_mip"].toggled.connect(self.session.crosshair.set_mip)

    def _connect(self) -> None:
        session, events = self.session, self.state.events
        self.runner.finished.connect(lambda *_: self.busy.setVisible(self.runner.busy))
        session.opening.discovered.connect(lambda found: self.browser.set_series(found.series))
        session.opening.thumbnails.connect(lambda batch: self.browser.set_thumbnails(batch))
        session.opening.opened.connect(lambda index, _image: self.browser.mark_current(index))
        session.reports.progress.connect(self.view.show_progress)
        session.explanation.explain_progress.connect(self.view.show_explain_progress)
        session.explanation.explaining.connect(lambda on: self.busy.show() if on else None)
        session.explanation.maps_shown.connect(self._on_maps_shown)
        session.reports.message.connect(self.say)
        session.reports.error.connect(lambda message: self.say(message, 15000))
        session.model.trust_needed.connect(self.models.ask_trust)
        session.reports.problems_found.connect(self.problems.add)
        session.reports.problems_cleared.connect(self.problems.clear_problems)
        session.model.models_changed.connect(
            lambda: self.settings.setValue(
                "models/user", [str(p) for p in session.model.catalog.user.values()]
            )
        )
        self.browser.series_chosen.connect(session.opening.open_series)
        self.model_panel.add_model_requested.connect(self.models.ask_add)
        self.model_panel.card_requested.connect(self.models.show_card)
        self.model_panel.run_requested.connect(self.run_methods)
        self.model_panel.cancel_requested.connect(self.cancel)
        self.problems.count_changed.connect(self.view.show_problem_count)
        self.canvas.vb.window_dragged.connect(self.view.window_drag)
        self.canvas.vb.slice_scrolled.connect(self.state.step_frame)
        self.mpr.window_dragged.connect(self.view.window_drag)
        self.cine.playing.connect(
            lambda on: self.say(f"Cine at {self.cine.fps} fps" if on else "Cine stopped", 3000)
        )
        self.cine.rate_changed.connect(lambda fps: self.say(f"Cine at {fps} fps", 3000))
        self.canvas.cursor_moved.connect(
            lambda where: self.cursor_label.setText(cursor_text(self.state, where))
        )
        self.canvas.view_changed.connect(self.view.update_corners)
        events.image.connect(self._on_image)
        events.frame.connect(self._on_frame)
        events.voi.connect(self.view.update_corners)
        events.invert.connect(self.view.update_corners)
        events.show_corners.connect(self.canvas.corners.set_visible)
        self.comparison.scores_shown.connect(self.scores_shown)

    def _restore_layout(self) -> None:
        restore_layout(self, self.docks)
        self.opening.refresh_recent()
        self.window_menu_actions = build_window_menu(self, self.menus["window"], self.session)

    def place(self, width: int, height: int) -> None:
        place(self, width, height)

    def closeEvent(self, event) -> None:
        save_layout(self)
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
        return self.session.reports.errors

    def _on_maps_shown(self) -> None:
        self.comparison.refresh()
        self.maps_shown.emit()

    # --- opening --------------------------------------------------------------------------
    def open_paths(self, paths: list[str | Path]):
        """Open files and folders (study URLs: retrieved from their PACS); see :class:`OpenCommands`."""
        return self.opening.open_paths(paths)

    def last_folder(self) -> str:
        return saved.last_folder(self.settings)

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    def _on_image(self, image) -> None:
        self.tags.show_source(image.frames[0].source if image is not None else "")
        self.window_menu_actions = build_window_menu(self, self.menus["window"], self.session)
        self.view.update_corners()

    def _on_frame(self, frame: int) -> None:
        image = self.state.image
        if image is not None:
            self.tags.show_source(image.frames[frame].source)
        self.view.update_corners()

    # --- model and methods ----------------------------------------------------------------------
    def run_methods(self, methods: list[str] | None = None):
        return self.session.run_methods(methods)

    def explain_series(self):
        """The ticked methods on every slice, each map on one scale across the series (what the
        coronal and sagittal planes need to be read as one volume)."""
        self.busy.show()
        return self.session.explanation.explain_series(show=True)

    def cancel(self) -> None:
        if self.canvas.vb.tool:  # Esc first stops drawing or measuring
            self.annotations.set_tool("")
            self.measure.set_tool("")
            return
        self.session.cancel()

    # --- exports ----------------------------------------------------------------------------
    def export_context(self) -> ExportContext:
        return ExportContext(self.session, self.canvas, hide_phi=not self.show_phi.isChecked())

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.view.update_corners()
