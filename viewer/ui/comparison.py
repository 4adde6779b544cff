"""The comparison panel: the annotated image next to every computed map, with their numbers.

Small views share one zoom and pan (linked ViewBoxes) and follow the viewer's slice. Each map has
its scores under it (pointing game, IoU, energy inside the annotation, deletion/insertion AUC, the
randomisation sanity verdict when asked), and a sortable table repeats them. Without an annotation
the maps are still compared with each other (rank correlation) and by faithfulness. A second tab
scores every opened image the loaded annotation names (``ui/comparison_folder.py``).
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from viewer.explain.metric_catalog import metric, title_of_metric
from viewer.explain.registry import title_of
from viewer.state import SaliencyLayer
from viewer.state.session import ViewerSession
from viewer.ui.canvas import base_display
from viewer.ui.comparison_folder import FolderScoresView
from viewer.ui.layer_items import AnnotationItem

# The table's scores, in order; titles and tips are the metric catalogue's (one name per score).
SCORES = (
    "pointing_game", "iou_otsu", "energy_inside", "deletion_auc", "insertion_auc", "agreement",
    "stability_ssim", "sanity_verdict", "seconds",
)  # fmt: skip
COLUMNS = (("Method", None), *((title_of_metric(m), m) for m in SCORES))
TIPS = {m: metric(m).definition for m in SCORES if m != "seconds"}

FLAT_TIP = (
    "Blurring the whole image barely changes the target's probability, so every map's curve is "
    "about the same: this AUC cannot rank the maps"
)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "hit" if value else "miss"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


class _SortItem(QTableWidgetItem):
    """Sorts numerically by its stored value, with blanks last."""

    def __init__(self, value):
        super().__init__(_cell(value))
        self.value = value

    def __lt__(self, other) -> bool:
        a, b = self.value, getattr(other, "value", None)
        if a is None or b is None:
            return b is None and a is not None
        if isinstance(a, str) or isinstance(b, str):
            return str(a) < str(b)
        return float(a) < float(b)


class MiniView(QWidget):
    """One small linked view: the image, optionally one map, and the annotation outline."""

    def __init__(self, title: str, state, parent: QWidget | None = None):
        super().__init__(parent)
        self.view = pg.GraphicsView(background="#000000")
        self.vb = pg.ViewBox(invertY=True, lockAspect=True, enableMenu=False)
        self.vb.setDefaultPadding(0.0)
        self.view.setCentralItem(self.vb)
        self.base = pg.ImageItem(axisOrder="row-major")
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setZValue(10)
        self.vb.addItem(self.base)
        self.vb.addItem(self.overlay)
        self.annotation = AnnotationItem(state, width=1.4, fill=False, z=20)
        self.vb.addItem(self.annotation)
        self.title = QLabel(title)
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.title.setStyleSheet("font-weight: bold;")
        self.numbers = QLabel()
        self.numbers.setObjectName("mini_numbers")
        self.numbers.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.numbers.setStyleSheet("color: #c8c8c8; font-size: 11px;")
        self.numbers.setWordWrap(True)  # the tile's width, not the text's, sets the column's
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.title)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.numbers)


_MIN_TILE = 200  # px: smaller tiles show too little of a film to compare maps


class ComparisonPanel(QWidget):
    scores_shown = Signal()

    def __init__(self, session: ViewerSession, parent=None):
        super().__init__(parent)
        self.session = session
        self.state = state = session.state
        self.compare = session.comparison  # the numbers: this panel only draws them
        self.settings = QSettings()
        self.views: dict[str, MiniView] = {}

        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setSpacing(4)
        self.scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(self.grid_host)
        self.columns = 2
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("comparison_table")
        self.table.setHorizontalHeaderLabels([name for name, _ in COLUMNS])
        for column, (_name, key) in enumerate(COLUMNS):
            if key in TIPS:
                self.table.horizontalHeaderItem(column).setToolTip(TIPS[key])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSortingEnabled(True)
        self.sanity = QCheckBox("Randomisation sanity check (slower)")
        self.sanity.setObjectName("compare_sanity")
        self.sanity.toggled.connect(lambda _: self.refresh(force=True))
        self.status = QLabel()
        self.status.setObjectName("compare_status")
        # Wrapped: a long verdict must not widen the window past the screen and squeeze the docks.
        self.status.setWordWrap(True)
        options = QHBoxLayout()
        options.addWidget(self.sanity)
        options.addWidget(self.status, 1)
        bottom = QWidget()
        bottom_layout = QVBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        bottom_layout.addLayout(options)
        self.folder = FolderScoresView(session)
        self.bottom_tabs = QTabWidget()
        self.bottom_tabs.setObjectName("compare_tabs")
        self.bottom_tabs.addTab(self.table, "This image")
        self.bottom_tabs.addTab(self.folder, "Every annotated image")
        bottom_layout.addWidget(self.bottom_tabs)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(scroll)
        splitter.addWidget(bottom)
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([760, 200])
        self.splitter = splitter
        self.bottom_tabs.currentChanged.connect(lambda _index: self._room_for_tables())
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

        state.events.frame.connect(lambda *_: self.refresh())
        state.events.voi.connect(lambda *_: self._show_images())
        state.events.invert.connect(lambda *_: self._show_images())
        state.events.annotation.connect(lambda *_: self.refresh())
        state.events.show_annotation.connect(lambda *_: self._show_annotation())
        state.events.image.connect(lambda *_: self._clear())
        state.layers.events.removed.connect(lambda *_: self.refresh())
        session.stability.changed.connect(self._fill_table)
        self.compare.changed.connect(self._show_numbers)
        self.compare.status_changed.connect(lambda text: self.status.setText(text))
        self.compare.scored.connect(lambda: self.scores_shown.emit())

    # --- building the views -----------------------------------------------------------------
    def _clear(self) -> None:
        for view in self.views.values():
            self.grid.removeWidget(view)
            view.deleteLater()
        self.views = {}
        self.table.setRowCount(0)

    def _layers(self) -> list[SaliencyLayer]:
        return self.compare.layers()

    def _ensure_views(self) -> None:
        names = ["__image__"] + [layer.method for layer in self._layers()]
        if list(self.views) == names:
            return
        self._clear()
        first = None
        for name in names:
            title = "Image and annotation" if name == "__image__" else title_of(name)
            view = MiniView(title, self.state)
            view.setObjectName(f"mini_{name}")
            if first is None:
                first = view.vb
            else:  # one zoom and pan for all
                view.vb.setXLink(first)
                view.vb.setYLink(first)
            self.views[name] = view
        self.columns = 0  # placed by _size_views
        self._size_views()

    def _show_images(self) -> None:
        image = self.state.image
        if image is None:
            return
        display, levels, lut, _raw = base_display(self.state)  # the same mapping as the main view
        aspect = 1.0 / image.geometry.pixel_aspect
        for view in self.views.values():
            view.vb.setAspectLocked(True, ratio=aspect)
            view.base.setImage(display, autoLevels=False, levels=levels, lut=lut)

    def _show_maps(self) -> None:
        for layer in self._layers():
            view = self.views.get(layer.method)
            index = layer.display_index(self.state.frame)
            if view is None or index is None:
                continue
            view.overlay.setImage(index, autoLevels=False, levels=(0, 255), lut=layer.lut())
            view.overlay.setOpacity(max(layer.opacity, 0.6))

    def _show_annotation(self) -> None:
        for view in self.views.values():
            view.annotation.refresh()

    # --- scores -------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        """Rebuild the views and, when the panel is visible, recompute the numbers."""
        self.compare.dirty = True
        if not self.isVisible() and not force:
            return
        self._ensure_views()
        self._show_images()
        self._show_maps()
        self._show_annotation()
        self._fit()
        self._score()

    def _size_views(self) -> None:
        """Equal square tiles filling the width: linked views of one size share one zoom exactly.
        Three columns for more than four views, fewer where the panel is too narrow for 200 px
        tiles (a 1280 px screen), so no tile is ever cut off."""
        wanted = 2 if len(self.views) <= 4 else 3
        columns = max(1, min(wanted, self.scroll.viewport().width() // (_MIN_TILE + 12)))
        if columns != self.columns:
            self.columns = columns
            for view in self.views.values():
                self.grid.removeWidget(view)  # a no-op for a new tile
            for i, view in enumerate(self.views.values()):
                self.grid.addWidget(view, i // columns, i % columns)
        margins = self.grid.contentsMargins()
        # Everything around the tiles: the grid's margins and spacing, each tile's own margins.
        around = margins.left() + margins.right() + self.grid.horizontalSpacing() * (self.columns - 1)
        around += self.columns * 4  # MiniView's 2 px margins on either side
        tile = max(_MIN_TILE, (self.scroll.viewport().width() - around) // self.columns)
        for view in self.views.values():
            view.view.setFixedSize(tile, tile - 20)

    def _fit(self) -> None:
        image = self.state.image
        first = next(iter(self.views.values()), None)
        if first is not None and image is not None:
            first.vb.setRange(QRectF(0, 0, image.columns, image.rows), padding=0.0)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._size_views()
        self._fit()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.compare.dirty:
            self.refresh()

    def _score(self) -> None:
        """Ask the model for the numbers, with the panel's settings (steps, sanity)."""
        steps = int(self.settings.value("compare/steps", 50, type=int))
        self.compare.score(steps, self.sanity.isChecked())

    def _room_for_tables(self) -> None:
        """The rows of every annotated image need more room than one image's few methods: that tab
        takes half the height, if it has less."""
        top, bottom = self.splitter.sizes()
        if self.bottom_tabs.currentWidget() is self.folder and bottom < (top + bottom) // 2:
            self.splitter.setSizes([(top + bottom) // 2, (top + bottom) - (top + bottom) // 2])

    def _show_numbers(self) -> None:
        """The model's scores under each map and in the table."""
        for method, scores in self.compare.scores.items():
            view = self.views.get(method)
            if view is not None:
                view.numbers.setText(self.summary(scores))
        self._fill_table()

    @staticmethod
    def summary(scores) -> str:
        parts = []
        if scores.pointing_game is not None:
            parts.append(f"PG {'hit' if scores.pointing_game else 'miss'}")
        if scores.iou_otsu is not None:
            parts.append(f"IoU {scores.iou_otsu:.2f}")
        if scores.energy_inside is not None:
            parts.append(f"energy {scores.energy_inside:.2f}")
        if scores.deletion_auc is not None:
            parts.append(f"del {scores.deletion_auc:.2f}")
        if scores.insertion_auc is not None:
            parts.append(
                f"ins {scores.insertion_auc:.2f}" + (" (flat)" if scores.faithfulness_uninformative else "")
            )
        if scores.sanity_verdict:
            parts.append(f"sanity: {scores.sanity_verdict}")
        return "  ".join(parts)

    def _fill_table(self) -> None:
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(self.compare.scores))
        for row, (method, scores) in enumerate(self.compare.scores.items()):
            for column, (_name, key) in enumerate(COLUMNS):
                if key is None:
                    value = title_of(method)
                elif key == "agreement":
                    value = self.compare.agreement.get(method)
                elif key == "stability_ssim":
                    value = self.compare.stability_ssim(method)
                else:
                    value = getattr(scores, key)
                item = _SortItem(value)
                if key in ("deletion_auc", "insertion_auc") and scores.faithfulness_uninformative:
                    item.setText(f"{item.text()} (flat)")
                    item.setToolTip(FLAT_TIP)
                self.table.setItem(row, column, item)
        self.table.setSortingEnabled(True)

    def ask_stability(self) -> None:
        """Model > Stability of the maps...: how many seeds besides the session's the random
        methods are compared over (the others go over the model's checkpoints), then the run."""
        seeds, ok = QInputDialog.getInt(
            self.window(),
            "Stability of the maps",
            "Random methods (LIME, RISE, SmoothGrad, GradientSHAP) are run with the session's seed and "
            "this many more;\nthe others are compared over the model's checkpoints, where its "
            "manifest lists several.\nSeeds besides the session's:",
            2,
            1,
            20,
        )
        if ok:
            self.session.stability.start(extra_seeds=seeds)

    def table_rows(self) -> list[list[str]]:
        return [
            [self.table.item(r, c).text() for c in range(self.table.columnCount())]
            for r in range(self.table.rowCount())
        ]
