"""The layer list and the controls of the selected layer, bound both ways to the state."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleRangeSlider, QLabeledDoubleSlider

from viewer.io.overlay import COLORMAPS
from viewer.state import SaliencyLayer, ViewerState

CONVENTION_TEXT = {
    "unit": "evidence for the target, scaled to [0, 1]",
    "absolute": "gradient magnitude, scaled to [0, 1]",
    "signed": "signed attribution in [-1, 1]: red for, blue against",
}


class LayerPanel(QWidget):
    """One row per saliency layer (checkbox = visible, selection = active layer), and the active
    layer's opacity, colour map and threshold."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self._bound: SaliencyLayer | None = None
        self._updating = False

        self.list = QListWidget()
        self.list.setObjectName("layer_list")
        self.list.setToolTip("Saliency layers: tick to show, select to adjust (Ctrl+Up/Down cycles)")
        self.opacity = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.opacity.setObjectName("layer_opacity")
        self.opacity.setRange(0.0, 1.0)
        self.opacity.setSingleStep(0.05)
        self.opacity.setToolTip("Layer opacity (no recompute)")
        self.colormap = QComboBox()
        self.colormap.setObjectName("layer_colormap")
        self.colormap.addItems(COLORMAPS)
        self.threshold = QLabeledDoubleRangeSlider(Qt.Orientation.Horizontal)
        self.threshold.setObjectName("layer_threshold")
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.01)
        self.threshold.setToolTip(
            "Lower value: weaker saliency is hidden. Opacity ramps up to the upper value "
            "(of the magnitude, for signed maps)."
        )
        self.info = QLabel()
        self.info.setObjectName("layer_info")
        self.info.setWordWrap(True)
        self.info.setStyleSheet("color: #a0a0a0;")
        self.info.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        # The description changes length with the layer and as an estimate is refined: in a box of
        # fixed height (scrolling when longer) it never moves the sliders under the user's pointer.
        self.info_box = QScrollArea()
        self.info_box.setObjectName("layer_info_box")
        self.info_box.setWidget(self.info)
        self.info_box.setWidgetResizable(True)
        self.info_box.setFrameShape(QScrollArea.Shape.NoFrame)
        self.info_box.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.info_box.setFixedHeight(7 * self.info.fontMetrics().lineSpacing())

        form = QFormLayout()
        form.addRow("Opacity", self.opacity)
        form.addRow("Colours", self.colormap)
        form.addRow("Threshold", self.threshold)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list, 1)
        layout.addLayout(form)
        layout.addWidget(self.info_box)

        for control in (self.opacity, self.colormap, self.threshold):
            for widget in (control, *control.findChildren(QWidget)):
                widget.installEventFilter(self)
        self.list.itemChanged.connect(self._on_item_changed)
        self.list.currentRowChanged.connect(self._on_row_changed)
        self.opacity.valueChanged.connect(lambda v: self._set("opacity", float(v)))
        self.colormap.currentTextChanged.connect(lambda v: self._set("colormap", v))
        self.threshold.valueChanged.connect(self._on_threshold)
        state.layers.events.inserted.connect(self._on_inserted)
        state.layers.events.removed.connect(lambda *_: self._rebuild())
        state.events.active_layer.connect(self._on_active)
        self._set_enabled(False)

    # --- list ---------------------------------------------------------------------------
    def _rebuild(self) -> None:
        self._updating = True
        self.list.clear()
        for layer in self.state.layers:
            self.list.addItem(self._item(layer))
        self._updating = False
        self._on_active(self.state.active_layer)

    def _item(self, layer: SaliencyLayer) -> QListWidgetItem:
        item = QListWidgetItem(self._text(layer))
        item.setData(Qt.ItemDataRole.UserRole, layer.method)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if layer.visible else Qt.CheckState.Unchecked)
        return item

    def _text(self, layer: SaliencyLayer) -> str:
        """Title and seconds; an estimate still being refined says how far it got instead."""
        smap = layer.map_for(self.state.frame) or next(iter(layer.maps.values()), None)
        if smap is not None and smap.progress:
            return f"{layer.title}  {smap.progress}..."
        seconds = f"  {smap.seconds:.2f} s" if smap is not None else ""
        return f"{layer.title}{seconds}"

    def _on_inserted(self, index: int, layer: SaliencyLayer) -> None:
        self._updating = True
        self.list.insertItem(index, self._item(layer))
        self._updating = False
        layer.events.visible.connect(lambda v, *_, m=layer.method: self._show_visible(m, v))
        layer.events.maps.connect(lambda *_, m=layer.method: self._refresh_text(m))

    def _row_of(self, method: str) -> int:
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.ItemDataRole.UserRole) == method:
                return row
        return -1

    def _show_visible(self, method: str, visible: bool) -> None:
        row = self._row_of(method)
        if row >= 0:
            self._updating = True
            self.list.item(row).setCheckState(Qt.CheckState.Checked if visible else Qt.CheckState.Unchecked)
            self._updating = False

    def _refresh_text(self, method: str) -> None:
        row, layer = self._row_of(method), self.state.layer(method)
        if row >= 0 and layer is not None:
            self._updating = True
            self.list.item(row).setText(self._text(layer))
            self._updating = False
        if layer is not None and layer is self._bound:
            self._show_info(layer)  # its notes: how many samples so far, whether it has settled

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        if self._updating:
            return
        layer = self.state.layer(item.data(Qt.ItemDataRole.UserRole))
        if layer is not None:
            layer.visible = item.checkState() == Qt.CheckState.Checked

    def _on_row_changed(self, row: int) -> None:
        if not self._updating and row >= 0:
            self.state.layer_held = True  # the user's choice: a finishing method must not take it
            self.state.active_layer = self.list.item(row).data(Qt.ItemDataRole.UserRole)

    def eventFilter(self, watched, event) -> bool:
        """Touching a style control (a press, a click that opens the colour list, keyboard focus)
        holds the selection on the layer being styled."""
        if event.type() in (QEvent.Type.MouseButtonPress, QEvent.Type.FocusIn, QEvent.Type.KeyPress):
            self.state.layer_held = True
        return super().eventFilter(watched, event)

    # --- controls of the active layer ---------------------------------------------------------
    def _on_active(self, method: str) -> None:
        if self._bound is not None:
            for name in ("opacity", "colormap", "low", "high"):
                getattr(self._bound.events, name).disconnect(self._pull)
        layer = self.state.layer(method)
        self._bound = layer
        self._set_enabled(layer is not None)
        row = self._row_of(method)
        if row != self.list.currentRow():
            self._updating = True
            self.list.setCurrentRow(row)
            self._updating = False
        if layer is None:
            self.info.setText("")
            return
        for name in ("opacity", "colormap", "low", "high"):
            getattr(layer.events, name).connect(self._pull)
        self._pull()

    def _pull(self, *_args) -> None:
        """Show the bound layer's values in the controls (without writing them back)."""
        layer = self._bound
        if layer is None:
            return
        self._updating = True
        self.opacity.setValue(layer.opacity)
        self.colormap.setCurrentText(layer.colormap)
        self.threshold.setValue((layer.low, layer.high))
        self._updating = False
        self._show_info(layer)

    def _show_info(self, layer: SaliencyLayer) -> None:
        smap = layer.map_for(self.state.frame) or next(iter(layer.maps.values()), None)
        lines = [CONVENTION_TEXT[layer.convention]]
        if smap is not None:
            lines += smap.notes
            if not smap.class_sensitive and not smap.notes:
                lines.append("not class-specific")
        self.info.setText("\n".join(lines))

    def _set(self, name: str, value) -> None:
        if not self._updating and self._bound is not None:
            setattr(self._bound, name, value)

    def _on_threshold(self, value: tuple[float, float]) -> None:
        if not self._updating and self._bound is not None:
            low, high = value
            self._bound.low, self._bound.high = float(low), float(max(high, low + 0.01))

    def _set_enabled(self, enabled: bool) -> None:
        for widget in (self.opacity, self.colormap, self.threshold):
            widget.setEnabled(enabled)
