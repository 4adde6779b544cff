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
        colours = [QColor(model_colour(outputs.labels, label)).getRgb()[:3] for label, _ in shown]
        if outputs.style == "fill":  # every tint first: a later mask's fill must not hide an outline
            for (_, mask), colour in zip(shown, colours, strict=True):
                rgba[mask] = (*colour, 100)
        for (_, mask), colour in zip(shown, colours, strict=True):
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
        self.state.events.target.connect(self.refresh)  # the box explained is the target's
        self.refresh()

    def _label_room(self, rows: int) -> float:
        """A label's height in image pixels (about 20 screen pixels at the current zoom)."""
        per_pixel = self.pixelHeight() if self.scene() is not None else 0.0
        return 20 * per_pixel if per_pixel > 0 else 0.03 * rows

    def refresh(self, *_args) -> None:
        self.prepareGeometryChange()
        for text in self.texts:
            text.setParentItem(None)
            if text.scene() is not None:
                text.scene().removeItem(text)
        self.rects, self.texts = [], []
        image, boxes = self.state.image, self.outputs.boxes()
        self._bounds = QRectF(0, 0, image.columns, image.rows) if image is not None else QRectF()
        explained = self.outputs.explained_box()
        if boxes is None:
            self.update()
            return
        labels = self.outputs.prediction.labels  # a label's colour whatever the threshold shows
        room = self._label_room(image.rows if image is not None else 0)
        drawn = []
        for box, label, score in zip(boxes.boxes, boxes.labels, boxes.scores, strict=True):
            drawn.append((box, label, f"{label} {score:.2f}", model_colour(labels, label), 1.6))
        if explained is not None:  # on top, in white: a radiologist's box too, which has no score
            text = f"{explained.label} (radiologist)" if explained.score is None else None
            drawn = [d for d in drawn if not (d[1] == explained.label and np.allclose(d[0], explained.box))]
            score = f"{explained.score:.2f}" if explained.score is not None else ""
            drawn.append(
                (explained.box, explained.label, text or f"{explained.label} {score}", REGION_COLOUR, 2.4)
            )
        for box, _label, words, colour, width in drawn:
            rect = QRectF(float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1]))
            self.rects.append((rect, cosmetic_pen(colour, width)))
            inside = float(box[1]) < room  # no room above the image's top edge: the label goes inside
            text = pg.TextItem(words, color=colour, anchor=(0, 0 if inside else 1), fill=(0, 0, 0, 150))
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


# A checked tool button in the dark theme looks like an unchecked one: the accent says "on".
CHECKED_STYLE = (
    "QPushButton:checked { background: #2f6fb0; color: #ffffff; border: 1px solid #6aa9ff;"
    " border-radius: 2px; padding: 3px 6px; }"
)


def _button(text: str, name: str, tip: str) -> QPushButton:
    button = QPushButton(text)
    button.setObjectName(name)
    button.setToolTip(tip)
    return button


class OutputsPanel(QWidget):
    """What the model gave and what its maps explain: for a segmenter a layer per label, their
    style, the region tools and the masks' agreement with the annotation; for a detector the box
    threshold and the box tools. Controls of the other kind of model are hidden, and the
    buttons sit above anything whose height changes, so they stay under the pointer."""

    def __init__(self, session: ViewerSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session, self.outputs = session, session.outputs
        self.hint = QLabel("A segmenter's masks and a detector's boxes show here")
        self.hint.setObjectName("model_outputs_hint")
        self.hint.setWordWrap(True)
        self.list = QListWidget()
        self.list.setObjectName("model_output_list")
        self.list.setToolTip("The model's masks, a layer per label: tick to show")
        self.style = QComboBox()
        self.style.setObjectName("model_output_style")
        self.style.addItems(MASK_STYLES)
        self.style.setToolTip("outline: the masks' borders; fill: tinted masks (hides the map under them)")
        self.threshold = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.threshold.setObjectName("model_box_threshold")
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setToolTip("Boxes scored below are hidden and not targets")
        self.pick = _button(
            "Pick region",
            "model_pick_region",
            "Click a part of the model's mask (or a box) to explain it; Shift+click works too",
        )
        self.pick.setCheckable(True)
        self.pick.setStyleSheet(CHECKED_STYLE)
        self.drawn = _button(
            "Drawn region",
            "model_drawn_region",
            "Explain the region drawn (Edit > Draw...) of the target label on this slice",
        )
        self.whole = _button(
            "Model's mask", "model_whole_mask", "Explain the model's whole mask of the target label again"
        )
        self.annotated = _button(
            "Annotation box",
            "model_annotation_box",
            "Explain the radiologist's box of the target label on this slice (again: the next one); "
            "one the detector missed shows, with D-RISE, what would make the model see it",
        )
        self.region = QLabel()
        self.region.setObjectName("model_region")
        self.region.setWordWrap(True)
        # Three lines held, top-aligned: a dock too short for its text clipped it top and bottom.
        self.region.setMinimumHeight(3 * self.region.fontMetrics().lineSpacing() + 2)
        self.region.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.region.setToolTip("Shift+click a part of a mask or a box on the image to explain it instead")
        self.agreement = QLabel()
        self.agreement.setObjectName("model_agreement")
        self.agreement.setWordWrap(True)

        buttons = QHBoxLayout()
        for button in (self.pick, self.drawn, self.whole, self.annotated):
            buttons.addWidget(button)
        self.form = QFormLayout()
        self.form.addRow("Style", self.style)
        self.form.addRow("Box threshold", self.threshold)
        layout = QVBoxLayout(self)
        layout.addWidget(self.hint)
        layout.addLayout(self.form)
        layout.addLayout(buttons)
        layout.addWidget(self.region)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.agreement)
        layout.addStretch(0)  # the room the list leaves when hidden (a detector), not gaps between rows

        self.list.itemChanged.connect(self._on_item_changed)
        self.style.currentTextChanged.connect(self.outputs.set_style)
        self.threshold.valueChanged.connect(lambda v: self.outputs.set_threshold(float(v)))
        self.drawn.clicked.connect(lambda: self.outputs.use_drawn())
        self.whole.clicked.connect(lambda: self.outputs.use_models_mask())
        self.annotated.clicked.connect(lambda: self.outputs.use_annotation_box())
        self.outputs.changed.connect(self._rebuild)
        self.outputs.region_changed.connect(self._show_region)
        self.outputs.box_chosen.connect(self._show_region)
        self.outputs.style_changed.connect(self._show_region)  # the threshold may hide the best box
        self.session.state.events.target.connect(self._show_region)
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
        masks = bool(outputs.labels)
        boxes = outputs.prediction is not None and outputs.prediction.detections is not None
        self.hint.setVisible(not masks and not boxes)
        self.list.setVisible(masks)
        self.form.setRowVisible(self.style, masks)
        self.form.setRowVisible(self.threshold, boxes)
        for button in (self.drawn, self.whole):
            button.setVisible(masks)
        self.annotated.setVisible(boxes)
        self.pick.setVisible(masks or boxes)
        self.pick.setText("Pick box" if boxes and not masks else "Pick region")
        if not (masks or boxes):
            self.pick.setChecked(False)
        self._show_region()
        self._show_agreement()

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        label = item.data(Qt.ItemDataRole.UserRole)
        self.outputs.show(label, item.checkState() == Qt.CheckState.Checked)

    def _show_region(self, *_args) -> None:
        outputs = self.outputs
        self.region.setText(region_text(outputs))

    def _show_agreement(self, *_args) -> None:
        self.agreement.setText(agreement_text(self.outputs))


def region_text(outputs: ModelOutputs) -> str:
    """What the maps explain, in words: the region or box chosen, or the default."""
    if outputs.labels:
        region = outputs.region
        return (
            f"Maps explain {region.source}"
            if region is not None
            else "Maps explain the model's whole mask of the target"
        )
    if outputs.prediction is None or outputs.prediction.detections is None:
        return ""
    box = outputs.explained_box()
    if box is None:
        return "No box of the target shown: lower the threshold, or pick a box"
    corners = ", ".join(f"{v:.0f}" for v in box.box)
    return f"Maps explain {box.source}, [{corners}]"


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


__all__ = [
    "BoxesItem",
    "ModelMaskItem",
    "ModelOutputView",
    "OutputsPanel",
    "agreement_text",
    "model_colour",
    "region_text",
]
