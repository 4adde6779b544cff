"""Model choice, predictions per label (the target), methods to run, progress and cancel."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from viewer.explain.registry import (
    METHODS,
    default_methods,
    fast_default_methods,
    speed_label,
    speed_note,
    title_of,
)
from viewer.io.safe_text import printable
from viewer.state.session import ViewerSession
from viewer.ui.model_question import ModelQuestionBar


def method_text(method_id: str) -> str:
    """A method's row in the list: its title, and how long it takes where that is noticeable
    (``"LIME  (slow, ~60 s)"``), from the registry."""
    label = speed_label(method_id)
    return f"{title_of(method_id)}  ({label})" if label else title_of(method_id)


def method_tooltip(method_id: str) -> str:
    cls = METHODS[method_id]
    return f"{cls.family.description}; {cls.reference}\n{speed_note(method_id)}"


class ModelPanel(QWidget):
    """A view of the session's model, prediction, target and methods. Choosing a model or a label
    changes the session; Run, Cancel and Add are requests the main window carries out."""

    add_model_requested = Signal()
    run_requested = Signal()
    cancel_requested = Signal()
    card_requested = Signal()  # the caution banner's "Model card" link

    def __init__(self, session: ViewerSession, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.state = state = session.state
        self.models = QComboBox()
        self.models.setObjectName("model_combo")
        self.models.setToolTip("Bundled demo models and the models you added (Model > Add model...)")
        # A manifest's name can be long ("Chest X-ray findings segmenter (demo, MONAI UNet)"): sized
        # to its text the chooser widened the column past the dock and pushed Run and Cancel out.
        self.models.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.models.setMinimumContentsLength(16)
        add = QPushButton("Add...")
        add.setToolTip("Add your own model by picking its manifest.toml")
        self.predictions = QTableWidget(0, 2)
        self.predictions.setObjectName("predictions")
        self.predictions.setHorizontalHeaderLabels(["Label", "Probability"])
        self.predictions.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.predictions.horizontalHeader().setStretchLastSection(True)
        self.predictions.verticalHeader().hide()
        self.predictions.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # Compact rows, and room for five labels (the bundled models' and CheXpert's five findings).
        row = self.predictions.fontMetrics().height() + 8
        self.predictions.verticalHeader().setDefaultSectionSize(row)
        header = self.predictions.horizontalHeader().sizeHint().height()
        self.predictions.setMinimumHeight(header + 5 * row + 2 * self.predictions.frameWidth())  # 5 labels
        self.predictions.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.predictions.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.predictions.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.predictions.setToolTip("Select a label to explain it (default: the top prediction)")
        self.methods = QListWidget()
        self.methods.setObjectName("methods")
        # The method list takes the height left, not its preferred: in its scroll area the panel is
        # as tall as its content asks, and that must leave Run on screen.
        self.methods.setMinimumHeight(6 * (self.methods.fontMetrics().height() + 2))
        self.methods.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        # A long row ("Score-CAM (every channel)  (slow, ~120 s)") loses the middle of its title,
        # never the time at its end, and the list never scrolls sideways.
        self.methods.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.methods.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        for method_id in METHODS:
            item = QListWidgetItem(method_text(method_id))
            item.setData(Qt.ItemDataRole.UserRole, method_id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            checked = method_id in session.explanation.methods
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
            item.setToolTip(method_tooltip(method_id))
            self.methods.addItem(item)
        fast = ", ".join(map(title_of, fast_default_methods()))
        slow = ", ".join(title_of(m) for m in default_methods() if m not in fast_default_methods())
        self.default_set = QPushButton("Default set")
        self.default_set.setObjectName("default_set")
        self.default_set.setToolTip(
            f"Tick the default methods: {', '.join(map(title_of, default_methods()))}"
        )
        self.fast_set = QPushButton("Fast set")
        self.fast_set.setObjectName("fast_set")
        self.fast_set.setToolTip(f"Tick the default methods without the slow ones ({slow}): {fast}")
        self.run_button = QPushButton("Run")
        self.run_button.setObjectName("run")
        self.run_button.setToolTip("Compute the ticked methods for the target (Ctrl+R)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancel")
        self.cancel_button.setToolTip("Stop the running computation (Esc)")
        self.cancel_button.setEnabled(False)
        self.run_on_open = QCheckBox("Run on open")
        self.run_on_open.setChecked(session.explanation.run_on_open)
        self.run_on_open.setToolTip("Compute the ticked methods whenever an image, slice or target changes")
        self.progress = QProgressBar()
        self.progress.setObjectName("method_progress")
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.status = QLabel()
        self.status.setObjectName("method_status")
        self.status.setWordWrap(True)
        # Persistent, not a dialog: a model made on phantoms says so for as long as it is applied
        # to a real image.
        self.caution = QLabel()
        self.caution.setObjectName("model_caution")
        self.caution.setWordWrap(True)
        self.caution.setStyleSheet(
            "background: #5c4300; color: #ffe08a; border: 1px solid #b38600; padding: 4px; font-weight: bold;"
        )
        self.caution.setOpenExternalLinks(False)
        self.caution.linkActivated.connect(lambda _link: self.card_requested.emit())
        self.caution.hide()

        top = QHBoxLayout()
        top.addWidget(self.models, 1)
        top.addWidget(add)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        self.question = ModelQuestionBar(session, self)
        self.question.asked.connect(self._fit_wrapped)
        layout.addWidget(self.question)
        layout.addWidget(QLabel("Predictions"))
        layout.addWidget(self.caution)
        layout.addWidget(self.predictions, 2)
        layout.addWidget(QLabel("Methods"))
        layout.addWidget(self.methods, 3)
        presets = QHBoxLayout()
        presets.addWidget(self.default_set)
        presets.addWidget(self.fast_set)
        layout.addLayout(presets)
        layout.addWidget(self.run_on_open)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)

        add.clicked.connect(self.add_model_requested)
        self.models.currentIndexChanged.connect(self._on_model_index)
        self.run_button.clicked.connect(self.run_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.predictions.itemSelectionChanged.connect(self._on_selection)
        self.methods.itemChanged.connect(lambda _item: self._store_methods())
        self.default_set.clicked.connect(lambda: self.set_checked_methods(list(default_methods())))
        self.fast_set.clicked.connect(lambda: self.set_checked_methods(list(fast_default_methods())))
        self.run_on_open.toggled.connect(lambda on: setattr(session.explanation, "run_on_open", on))
        state.events.target.connect(self._show_target)
        state.events.frame.connect(lambda *_: self._show_prediction())
        session.model.models_changed.connect(self._list_models)
        session.model.model_changed.connect(self._show_model)
        session.model.predicted.connect(lambda *_: self._show_prediction())
        session.model.caution_changed.connect(self.show_caution)
        session.model.support_changed.connect(self.set_method_support)
        session.explanation.explaining.connect(self.set_running)
        session.explanation.explain_progress.connect(self.show_progress)
        session.reports.progress.connect(self._show_lane_progress)
        session.explanation.method_status.connect(lambda text: self.status.setText(text))
        self._list_models()

    # --- models -------------------------------------------------------------------------
    def _list_models(self) -> None:
        self.models.blockSignals(True)
        self.models.clear()
        for name, path in self.session.model.catalog.models.items():
            self.models.addItem(name, str(path))
            self.models.setItemData(self.models.count() - 1, str(path), Qt.ItemDataRole.ToolTipRole)
        self.models.blockSignals(False)
        self._show_model(self.state.model)

    def _show_model(self, name: str) -> None:
        self.models.blockSignals(True)
        self.models.setCurrentIndex(max(self.models.findText(name), 0))
        self.models.blockSignals(False)

    def select_model(self, name: str) -> bool:
        """Choose the model ``name`` as the user would (the session predicts with it)."""
        index = self.models.findText(name)
        if index < 0:
            return False
        if index == self.models.currentIndex():
            return self.state.model == name or self.session.choose_model(name)
        self.models.setCurrentIndex(index)
        return True

    def _on_model_index(self, index: int) -> None:
        if index >= 0:
            self.session.choose_model(self.models.itemText(index))

    # --- predictions and target -----------------------------------------------------------------
    def _show_prediction(self) -> None:
        prediction = self.session.model.prediction
        if prediction is None:
            self.clear_predictions()
        else:
            self.show_predictions(prediction.labels, prediction.probabilities[self.state.frame])
        # A 3-D model's probabilities are of the whole series, whichever slice is on screen.
        self.predictions.setToolTip(
            "Probabilities of the whole series (a 3-D model)"
            if prediction is not None and prediction.per_volume
            else ""
        )

    def show_predictions(self, labels: tuple[str, ...], probabilities: np.ndarray) -> None:
        """One row per label, most probable first, with a bar."""
        order = np.argsort(-probabilities, kind="stable")
        self.predictions.blockSignals(True)
        self.predictions.setRowCount(len(labels))
        for row, i in enumerate(order):
            label = QTableWidgetItem(printable(labels[i]))  # the manifest's text; the data stays exact
            label.setData(Qt.ItemDataRole.UserRole, labels[i])
            self.predictions.setItem(row, 0, label)
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setValue(round(float(probabilities[i]) * 1000))
            bar.setFormat(f"{probabilities[i]:.3f}")
            bar.setTextVisible(True)
            self.predictions.setCellWidget(row, 1, bar)
        self.predictions.blockSignals(False)
        self._keep_probabilities_visible()
        self._show_target(self.state.target)

    def _keep_probabilities_visible(self) -> None:
        """The panel never gets narrower than the longest label plus a readable bar: a wide
        comparison panel must not squeeze the probabilities out of sight."""
        self.predictions.resizeColumnToContents(0)
        table = self.predictions
        width = (
            table.columnWidth(0)
            + table.fontMetrics().horizontalAdvance("0.000") * 3  # the bar, with room around its text
            + table.verticalScrollBar().sizeHint().width()
            + 2 * table.frameWidth()
        )
        table.setMinimumWidth(width)

    def clear_predictions(self) -> None:
        self.predictions.setRowCount(0)

    def show_caution(self, text: str | None) -> None:
        """The model's caution for the image on screen (see ``ModelManifest.caution``), or none."""
        self.caution.setText(f'{text} <a href="card" style="color: #ffe08a;">Model card</a>' if text else "")
        self.caution.setVisible(bool(text))
        self._fit_wrapped()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_wrapped()

    def _fit_wrapped(self) -> None:
        """Word-wrapped labels ask for the height their text needs at the panel's width: a layout
        counts only their one-line minimum, and the lists below would be drawn over them."""
        for label in (self.caution, self.question.text):
            label.setMinimumHeight(label.heightForWidth(max(label.width(), 1)) if label.text() else 0)

    def _on_selection(self) -> None:
        rows = self.predictions.selectionModel().selectedRows()
        if rows:
            self.state.target = self.predictions.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)

    def _show_target(self, target: str) -> None:
        self.predictions.blockSignals(True)
        for row in range(self.predictions.rowCount()):
            if self.predictions.item(row, 0).data(Qt.ItemDataRole.UserRole) == target:
                self.predictions.selectRow(row)
        self.predictions.blockSignals(False)

    # --- methods ----------------------------------------------------------------------------
    def checked_methods(self) -> list[str]:
        return [
            self.methods.item(i).data(Qt.ItemDataRole.UserRole)
            for i in range(self.methods.count())
            if self.methods.item(i).checkState() == Qt.CheckState.Checked
            and self.methods.item(i).flags() & Qt.ItemFlag.ItemIsEnabled
        ]

    def set_method_support(self, reasons: dict[str, str | None]) -> None:
        """Grey out the methods the model in use cannot support, the reason as their tooltip."""
        for i in range(self.methods.count()):
            item = self.methods.item(i)
            method_id = item.data(Qt.ItemDataRole.UserRole)
            reason = reasons.get(method_id)
            enabled = item.flags() | Qt.ItemFlag.ItemIsEnabled
            item.setFlags(enabled if reason is None else enabled & ~Qt.ItemFlag.ItemIsEnabled)
            item.setToolTip(reason or method_tooltip(method_id))

    def set_checked_methods(self, methods: list[str]) -> None:
        self.methods.blockSignals(True)
        for i in range(self.methods.count()):
            item = self.methods.item(i)
            wanted = item.data(Qt.ItemDataRole.UserRole) in methods
            item.setCheckState(Qt.CheckState.Checked if wanted else Qt.CheckState.Unchecked)
        self.methods.blockSignals(False)
        self._store_methods()

    def _store_methods(self) -> None:
        """The session's ticked methods are those ticked here that the model supports."""
        self.session.explanation.methods = self.checked_methods()

    def set_running(self, running: bool) -> None:
        """Cancel is live for as long as an explanation runs (on the slice or over the series)."""
        self.cancel_button.setEnabled(running)
        if not running:
            self.progress.setValue(0)

    def _show_lane_progress(self, lane: str, step: str, fraction: float) -> None:
        """A run over every slice says which method and slices it is computing."""
        if lane == "explain":
            self.progress.setValue(round(fraction * 1000))
            self.status.setText(f"{step}  {fraction:.0%}")

    def show_progress(self, done: int, total: int, step: str, fraction: float) -> None:
        """``done`` of ``total`` methods finished; ``step`` is at ``fraction``."""
        overall = (done + fraction) / max(total, 1)
        self.progress.setValue(round(overall * 1000))
        title = title_of(step)
        self.status.setText(f"{title}: {fraction:.0%}  ({done}/{total} methods done)")
