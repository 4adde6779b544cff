"""The model's own outputs in the window: a segmenter's masks, a detector's boxes, and picking the
region a map explains (``session.outputs``, :mod:`viewer.state.model_outputs`).

``ModelMaskItem`` draws the shown labels' masks on the slice on screen (outlines in warm colours,
apart from the radiologist's, or a tinted fill) and the chosen region in white.
``BoxesItem`` draws the boxes above the threshold with their label and score. ``OutputsPanel``
lists a layer per label (tick to show), the style, the box threshold, the region tools and the
masks' Dice/IoU against the annotation. ``ModelOutputView.install`` puts all of it in a window:
a click with the "Pick region" tool on (or a Shift+click) explains what is under the cursor.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from viewer.state.model_outputs import MASK_STYLES, ModelOutputs
from viewer.state.session import ViewerSession
from viewer.ui.layer_items import cosmetic_pen

# The model's colours: warm, apart from the annotation's (layer_items.LABEL_COLOURS) and the maps'.
MODEL_COLOURS = ("#ff9100", "#ffea00", "#ff1744", "#f50057", "#ffc400", "#ff6e40")
REGION_COLOUR = "#ffffff"  # the chosen region, and the chosen box


def model_colour(labels: tuple[str, ...], label: str) -> str:
    return MODEL_COLOURS[labels.index(label) % len(MODEL_COLOURS)] if label in labels else "#ffffff"


def edge_pixels(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The pixels of ``mask`` within ``width`` pixels of its border (an outline as an image: one
    call to draw however ragged the mask, where a vector path costs a Qt call per edge)."""
    inner = np.asarray(mask, bool)
    for _ in range(max(1, width)):
        padded = np.pad(inner, 1)
        inner = inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def outline_width(shape: tuple[int, ...]) -> int:
    """Outline thickness in image pixels: about two screen pixels when the image fits a window."""
    return max(1, round(max(shape) / 400))


class ModelMaskItem(pg.ImageItem):
    """The shown model masks of the slice on screen (outlines, or a tinted fill with outlines),
    and the chosen region's outline in white on top; one RGBA image."""

    def __init__(self, session: ViewerSession, z: float = 55) -> None:
        super().__init__(axisOrder="row-major")
        self.state, self.outputs = session.state, session.outputs
        self.rgba: np.ndarray | None = None
        self.setZValue(z)
        for signal in (self.outputs.changed, self.outputs.style_changed, self.outputs.region_changed):
            signal.connect(self.refresh)
        self.state.events.frame.connect(self.refresh)
        self.refresh()

    def refresh(self, *_args) -> None:
        outputs = self.outputs
        shown, region = outputs.shown_masks(), outputs.region
        if region is not None and region.frame != self.state.frame:
            region = None
        if not shown and region is None:
            self.rgba = None
            self.clear()
            return
        shape = shown[0][1].shape if shown else region.mask.shape
        width = outline_width(shape)
        rgba = np.zeros((*shape, 4), np.uint8)
        for label, mask in shown:
            colour = QColor(model_colour(outputs.labels, label)).getRgb()[:3]
            if outputs.style == "fill":
                rgba[mask] = (*colour, 100)
            rgba[edge_pixels(mask, width)] = (*colour, 255)
        if region is not None:
            rgba[edge_pixels(region.mask, 2 * width)] = (255, 255, 255, 255)
        self.rgba = rgba
        self.setImage(rgba, autoLevels=False, levels=(0, 255))


class BoxesItem(pg.GraphicsObject):
    """A detector's boxes above the threshold on the slice on screen, each with label and score;
    the chosen box in white."""

    def __init__(self, session: ViewerSession, z: float = 56) -> None:
        super().__init__()
        self.state, self.outputs = session.state, session.outputs
        self.rects: list[tuple[QRectF, object]] = []
        self.texts: list[pg.TextItem] = []
        self._bounds = QRectF()
        self.setZValue(z)
        for signal in (self.outputs.changed, self.outputs.style_changed, self.outputs.box_chosen):
            signal.connect(self.refresh)
        self.state.events.frame.connect(self.refresh)
        self.refresh()

    def refresh(self, *_args) -> None:
        self.prepareGeometryChange()
        for text in self.texts:
            text.setParentItem(None)
            if text.scene() is not None:
                text.scene().removeItem(text)
        self.rects, self.texts = [], []
        image, boxes = self.state.image, self.outputs.boxes()
        self._bounds = QRectF(0, 0, image.columns, image.rows) if image is not None else QRectF()
        chosen = self.outputs.box
        if boxes is None:
            self.update()
            return
        labels = tuple(dict.fromkeys(boxes.labels))
        for box, label, score in zip(boxes.boxes, boxes.labels, boxes.scores, strict=True):
            is_chosen = chosen is not None and chosen[0] == label and np.allclose(chosen[1], box)
            colour = REGION_COLOUR if is_chosen else model_colour(labels, label)
            rect = QRectF(float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1]))
            self.rects.append((rect, cosmetic_pen(colour, 2.4 if is_chosen else 1.6)))
            text = pg.TextItem(f"{label} {score:.2f}", color=colour, anchor=(0, 1), fill=(0, 0, 0, 150))
            text.setParentItem(self)
            text.setPos(float(box[0]), float(box[1]))
            self.texts.append(text)
        self.update()

    def boundingRect(self) -> QRectF:
        return self._bounds

    def paint(self, painter, *_args) -> None:
        for rect, pen in self.rects:
            painter.setPen(pen)
            painter.drawRect(rect)


def agreement_text(outputs: ModelOutputs) -> str:
    """One line per annotated label: the model's mask against the annotation."""
    rows = [f"{a.label}: Dice {a.dice:.2f}, IoU {a.iou:.2f}" for a in outputs.agreement()]
    return "Model mask vs annotation\n" + "\n".join(rows) if rows else ""


class OutputsPanel(QWidget):
    """A layer per label of the model's masks, their style, the box threshold, the region tools
    and the masks' agreement with the annotation."""

    def __init__(self, session: ViewerSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session, self.outputs = session, session.outputs
        self.list = QListWidget()
        self.list.setObjectName("model_output_list")
        self.list.setToolTip("The model's masks, a layer per label: tick to show")
        self.style = QComboBox()
        self.style.setObjectName("model_output_style")
        self.style.addItems(MASK_STYLES)
        self.threshold = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.threshold.setObjectName("model_box_threshold")
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setToolTip("Boxes scored below are hidden and not targets")
        self.pick = QPushButton("Pick region")
        self.pick.setObjectName("model_pick_region")
        self.pick.setCheckable(True)
        self.pick.setToolTip(
            "Click a part of the model's mask (or a box) to explain it; Shift+click works too"
        )
        self.drawn = QPushButton("Drawn region")
        self.drawn.setObjectName("model_drawn_region")
        self.drawn.setToolTip("Explain the region drawn (Edit > Draw...) of the target label on this slice")
        self.whole = QPushButton("Model's mask")
        self.whole.setObjectName("model_whole_mask")
        self.whole.setToolTip("Explain the model's whole mask of the target label again")
        self.region = QLabel()
        self.region.setObjectName("model_region")
        self.region.setWordWrap(True)
        self.agreement = QLabel()
        self.agreement.setObjectName("model_agreement")
        self.agreement.setWordWrap(True)

        buttons = QHBoxLayout()
        for button in (self.pick, self.drawn, self.whole):
            buttons.addWidget(button)
        form = QFormLayout()
        form.addRow("Style", self.style)
        form.addRow("Box threshold", self.threshold)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list, 1)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.region)
        layout.addWidget(self.agreement)

        self.list.itemChanged.connect(self._on_item_changed)
        self.style.currentTextChanged.connect(self.outputs.set_style)
        self.threshold.valueChanged.connect(lambda v: self.outputs.set_threshold(float(v)))
        self.drawn.clicked.connect(lambda: self.outputs.use_drawn())
        self.whole.clicked.connect(lambda: self.outputs.use_models_mask())
        self.outputs.changed.connect(self._rebuild)
        self.outputs.region_changed.connect(self._show_region)
        self.session.state.events.annotation.connect(self._show_agreement)
        self._rebuild()

    def _rebuild(self) -> None:
        outputs = self.outputs
        self.list.blockSignals(True)
        self.list.clear()
        for label in outputs.labels:
            item = QListWidgetItem(f"{label} (model)")
            item.setData(Qt.ItemDataRole.UserRole, label)
            item.setForeground(QColor(model_colour(outputs.labels, label)))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            shown = label not in outputs.hidden
            item.setCheckState(Qt.CheckState.Checked if shown else Qt.CheckState.Unchecked)
            self.list.addItem(item)
        self.list.blockSignals(False)
        self.threshold.blockSignals(True)
        self.threshold.setValue(outputs.threshold)
        self.threshold.blockSignals(False)
        has_boxes = outputs.prediction is not None and outputs.prediction.detections is not None
        self.threshold.setEnabled(has_boxes)
        for button in (self.drawn, self.whole):
            button.setEnabled(bool(outputs.labels))
        self.pick.setEnabled(bool(outputs.labels) or has_boxes)
        self._show_region(outputs.region)
        self._show_agreement()

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        label = item.data(Qt.ItemDataRole.UserRole)
        self.outputs.show(label, item.checkState() == Qt.CheckState.Checked)

    def _show_region(self, region) -> None:
        if region is not None:
            self.region.setText(f"Maps explain {region.source}")
        elif self.outputs.labels:
            self.region.setText("Maps explain the model's whole mask of the target")
        else:
            self.region.setText("")

    def _show_agreement(self, *_args) -> None:
        self.agreement.setText(agreement_text(self.outputs))


class ModelOutputView:
    """The items on the canvas, the panel in a dock, and the clicks that pick a region or a box."""

    def __init__(self, session: ViewerSession, view: pg.ViewBox) -> None:
        self.session, self.view = session, view
        self.masks = ModelMaskItem(session)
        self.boxes = BoxesItem(session)
        view.addItem(self.masks)
        view.addItem(self.boxes)
        self.panel = OutputsPanel(session)
        view.scene().sigMouseClicked.connect(self._on_click)

    @classmethod
    def install(cls, window) -> ModelOutputView:
        """Into a main window: items on its canvas, a "Model outputs" dock under the layers."""
        from viewer.ui.window_layout import make_dock

        view = cls(window.session, window.canvas.vb)
        dock = make_dock(window, "Model outputs", view.panel, Qt.DockWidgetArea.RightDockWidgetArea)
        window.docks["outputs"] = dock
        # Shown when a model gives masks or boxes, hidden for a classifier: its dock would only
        # take room from the methods list. Shown once per switch to such a model, so a user who
        # closes it keeps it closed while the model stays.
        outputs, had = window.session.outputs, [False]

        def follow() -> None:
            p = outputs.prediction
            has = p is not None and (p.masks is not None or p.detections is not None)
            if has and not had[0]:
                dock.show()
            elif not has and p is not None:
                dock.hide()
            had[0] = has

        dock.hide()
        outputs.changed.connect(follow)
        return view

    def click(self, x: float, y: float) -> bool:
        """A pick at image point ``(x, y)``: a box holding it, else the component of the model's
        mask under it. True when something was chosen."""
        outputs = self.session.outputs
        if outputs.pick_box(x, y) is not None:
            return True
        if not outputs.labels:
            return False
        return outputs.pick(int(np.floor(y)), int(np.floor(x))) is not None

    def _on_click(self, ev) -> None:
        picking = self.panel.pick.isChecked() or bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if ev.button() != Qt.MouseButton.LeftButton or not picking or self.session.state.image is None:
            return
        if not self.view.sceneBoundingRect().contains(ev.scenePos()):
            return
        point = self.view.mapSceneToView(ev.scenePos())
        if self.click(float(point.x()), float(point.y())):
            ev.accept()


__all__ = ["BoxesItem", "ModelMaskItem", "ModelOutputView", "OutputsPanel", "agreement_text", "model_colour"]
