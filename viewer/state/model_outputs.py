"""The model's own outputs on screen: ``session.outputs``, a part of the session. No Qt.

A classifier answers with probabilities; a segmenter answers with masks and a detector with boxes,
and those are what a reader checks first ("what did it find?") before asking why. This part holds
them for the image on screen, as the prediction brings them (``Prediction.masks``,
``Prediction.detections``), with what the views need to draw them: which labels' masks are shown,
outline or tinted fill, and the score threshold of the boxes.

It also holds the *region* a segmenter's maps explain. By default that is the model's own mask of
the target label (nothing is held: the engine takes the mask); the user may instead pick one
connected component of it (a click: a lesion among several), or use a region drawn with the
annotation tools. A chosen region is handed to the explanation through ``regions()``, and the maps
already computed of the label on that frame are dropped, since they explain another region.

A detector's maps explain one box at a time (a map per box costs a run per box, D-RISE minutes
each): the box clicked, else the target label's best box; a radiologist's box of the label may be
chosen too (``use_annotation_box``), the engine then explaining what would make the model see it
where the detector found nothing there. The box is handed to the explanation through
``boxes_explained()``, and choosing another drops the maps of the label on that frame.

The agreement of the model's masks with the radiologist's annotation (Dice, IoU per label) is
computed here, so the window and a test read the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from psygnal import Signal

from viewer.explain.localization import dice, iou
from viewer.explain.targets import component_at
from viewer.inference.model import Prediction
from viewer.io.annotations import Annotation
from viewer.state.explanation_runs import ExplanationRuns
from viewer.state.layer_book import LayerBook
from viewer.state.map_cache import MapCache
from viewer.state.model_in_use import ModelInUse
from viewer.state.reports import Reports
from viewer.state.viewer_state import ViewerState

if TYPE_CHECKING:  # the detector's boxes (viewer.inference.detection), read here, never made
    from viewer.inference.detection import Detections

MASK_STYLES = ("outline", "fill")


@dataclass(frozen=True)
class ChosenRegion:
    """A region the user chose as the target of a segmenter's maps: ``mask`` ``(rows, cols)`` bool
    on the native grid of ``frame``, of the model's label ``label``; ``source`` says where it came
    from, in words a status line can show."""

    label: str
    mask: np.ndarray
    frame: int
    source: str

    @property
    def pixels(self) -> int:
        return int(self.mask.sum())


@dataclass(frozen=True)
class ChosenBox:
    """A box the user chose as the target of a detector's maps: ``box`` ``x0, y0, x1, y1`` in the
    native pixels of ``frame``, of the model's label ``label``; ``score`` the detector's (None for
    a radiologist's box); ``source`` in words a status line can show."""

    label: str
    box: np.ndarray
    score: float | None
    frame: int
    source: str

    def same(self, other: ChosenBox | None) -> bool:
        """The same box of the same label (its maps stand)."""
        return other is not None and other.label == self.label and np.allclose(other.box, self.box)


@dataclass(frozen=True)
class Agreement:
    """The model's mask of a label against the annotation's, over the frames predicted."""

    label: str
    dice: float
    iou: float
    model_pixels: int
    annotated_pixels: int


class ModelOutputs:
    """The masks and boxes of the prediction on screen, how they are drawn, and the chosen region."""

    changed = Signal()  # new masks or boxes (a prediction came, or went)
    style_changed = Signal()  # shown labels, outline/fill, or the box threshold
    region_changed = Signal(object)  # the ChosenRegion, or None: the model's own mask again
    box_chosen = Signal(object)  # the ChosenBox clicked, or None

    def __init__(
        self,
        state: ViewerState,
        reports: Reports,
        model: ModelInUse,
        explanation: ExplanationRuns,
        cache: MapCache,
        layers: LayerBook,
    ) -> None:
        self.state, self.reports, self.model = state, reports, model
        self.explanation, self.cache, self.layers = explanation, cache, layers
        self.prediction: Prediction | None = None
        self.hidden: set[str] = set()  # labels whose masks are not drawn
        self.style = "outline"
        self.threshold = 0.5  # boxes scored below are not drawn (set from the manifest per model)
        self.region: ChosenRegion | None = None
        self.box: ChosenBox | None = None
        explanation.regions = self.regions  # the explanation asks which region it explains
        explanation.boxes = self.boxes_explained  # ... and which box
        model.predicted.connect(self._got_prediction)
        state.events.frame.connect(lambda *_: self._frame_changed())

    # --- what the model gave ----------------------------------------------------------------------
    @property
    def labels(self) -> tuple[str, ...]:
        """The labels with a mask layer: a segmenter's, else none."""
        p = self.prediction
        return tuple(p.labels) if p is not None and p.masks is not None else ()

    def _row(self, frame: int | None) -> int | None:
        p = self.prediction
        frame = self.state.frame if frame is None else frame
        if p is None or frame not in p.frames:
            return None
        return p.frames.index(frame)

    def mask(self, label: str, frame: int | None = None) -> np.ndarray | None:
        """The model's mask of ``label`` on ``frame`` (default: on screen), ``(rows, cols)`` bool."""
        row = self._row(frame)
        if row is None or label not in self.labels:
            return None
        return self.prediction.masks[row, self.prediction.labels.index(label)]

    def shown_masks(self, frame: int | None = None) -> list[tuple[str, np.ndarray]]:
        """``(label, mask)`` of each shown label with pixels on ``frame``, in the labels' order."""
        out = []
        for label in self.labels:
            mask = self.mask(label, frame)
            if label not in self.hidden and mask is not None and mask.any():
                out.append((label, mask))
        return out

    def boxes(self, frame: int | None = None) -> Detections | None:
        """The detector's boxes on ``frame`` scored at least the threshold."""
        p, row = self.prediction, self._row(frame)
        if p is None or p.detections is None or row is None:
            return None
        return p.detections[row].above(self.threshold)

    # --- how they are drawn -----------------------------------------------------------------------
    def show(self, label: str, visible: bool) -> None:
        (self.hidden.discard if visible else self.hidden.add)(label)
        self.style_changed.emit()

    def set_style(self, style: str) -> None:
        if style not in MASK_STYLES:
            raise ValueError(f"mask style must be one of {', '.join(MASK_STYLES)}, not {style!r}")
        self.style = style
        self.style_changed.emit()

    def set_threshold(self, threshold: float) -> None:
        self.threshold = float(threshold)
        self.style_changed.emit()

    # --- the region explained ---------------------------------------------------------------------
    def regions(self) -> dict[str, np.ndarray]:
        """What the explanation of the frame on screen takes as given regions: the chosen one, if
        it is of this frame (a 3-D segmenter's: on any slice, as voxels of the series); else
        nothing (the model's own masks)."""
        r, image = self.region, self.state.image
        if r is None or image is None:
            return {}
        if self._volume_model():  # a 3-D segmenter's region is voxels: the region's, on its slice
            volume = np.zeros((image.n_frames, *r.mask.shape), bool)
            volume[r.frame] = r.mask
            return {r.label: volume}
        return {r.label: r.mask} if r.frame == self.state.frame else {}

    def _volume_model(self) -> bool:
        manifest = self.model.manifest()
        return manifest is not None and manifest.input.volume

    def _frame_changed(self) -> None:
        # A 2-D segmenter's region is one frame's: another frame's maps explain the model's own
        # mask. A 3-D segmenter's maps cover the series, so its region stays while slices change.
        if not self._volume_model():
            self.use_models_mask(rerun=False)

    def pick(self, row: int, col: int, label: str | None = None) -> ChosenRegion | None:
        """Explain the connected component of the model's mask under pixel ``(row, col)``: of
        ``label`` (default: the target, then any shown label with a mask there)."""
        frame = self.state.frame
        candidates = [label] if label else [self.state.target, *[name for name, _ in self.shown_masks()]]
        for name in dict.fromkeys(c for c in candidates if c):
            mask = self.mask(name)
            if mask is not None and 0 <= row < mask.shape[0] and 0 <= col < mask.shape[1] and mask[row, col]:
                part = component_at(mask, row, col)
                where = f"the part of the model's {name} mask at ({col}, {row}), {int(part.sum())} pixels"
                if self._volume_model():  # the series is explained: say which slice the part is on
                    where += f" of slice {frame + 1}"
                return self.choose(ChosenRegion(name, part, frame, where))
        self.reports.message.emit(f"No model mask at ({col}, {row}): click inside one to explain it", 5000)
        return None

    def use_drawn(self, label: str | None = None) -> ChosenRegion | None:
        """Explain the annotation's region of ``label`` (default: the target) on the frame on
        screen: one drawn with the annotation tools, or loaded from a file."""
        label = label or self.state.target
        image, annotation, frame = self.state.image, self.state.annotation, self.state.frame
        if image is None or annotation is None or not label:
            self.reports.message.emit("Draw a region first (Edit > Draw...)", 5000)
            return None
        mask = annotation.mask(image, label, self.model.matcher)[frame]
        if not mask.any():
            self.reports.message.emit(f"No region of '{label}' drawn on this slice", 5000)
            return None
        return self.choose(ChosenRegion(label, mask, frame, f"the annotated region of {label}"))

    def choose(self, region: ChosenRegion) -> ChosenRegion:
        """Make ``region`` the target of the maps: its label becomes the target, the maps of
        another region of it on this frame go, and the ticked methods run."""
        previous, self.region = self.region, region
        if self.state.target != region.label:
            self.state.target = region.label
        self._forget_maps(previous)
        self._forget_maps(region)
        self.explanation.runner.cancel("explain")  # a run of the region before is not this one
        self.region_changed.emit(region)
        self.reports.message.emit(f"Explaining {region.source}", 5000)
        self.explanation.run_methods()
        return region

    def use_models_mask(self, rerun: bool = True) -> None:
        """Back to the default: the maps explain the model's own mask of the target."""
        previous, self.region = self.region, None
        if previous is None:
            return
        self._forget_maps(previous)
        self.region_changed.emit(None)
        if rerun and previous.frame == self.state.frame:
            self.explanation.run_methods()

    def _forget_maps(self, region: ChosenRegion | None) -> None:
        image = self.state.image
        if region is None or image is None:
            return
        self.cache.drop(id(image), self.state.model, region.label, region.frame)
        self.layers.rebuild()

    # --- the box explained ------------------------------------------------------------------------
    def explained_box(self) -> ChosenBox | None:
        """The box the maps of the target on the frame on screen explain: the one chosen, if of
        the target on this frame; else the target's best box shown; None if it has none."""
        target, frame, chosen = self.state.target, self.state.frame, self.box
        if chosen is not None and chosen.label == target and chosen.frame == frame:
            return chosen
        boxes = self.boxes()
        mine = [i for i, label in enumerate(boxes.labels) if label == target] if boxes is not None else []
        if not mine:
            return None
        best = max(mine, key=lambda i: float(boxes.scores[i]))
        score = float(boxes.scores[best])
        where = f"the best {target} box (score {score:.2f})"
        return ChosenBox(target, boxes.boxes[best].copy(), score, frame, where)

    def boxes_explained(self) -> list[tuple[str, list[float]]] | None:
        """What the explanation of the frame on screen takes as given boxes (the engine's
        ``boxes``): the explained box; None for any other model (the engine's default)."""
        box = self.explained_box()
        return None if box is None else [(box.label, [float(v) for v in box.box])]

    def pick_box(self, x: float, y: float) -> ChosenBox | None:
        """The smallest shown box holding ``(x, y)`` becomes the box explained, its label the target."""
        boxes = self.boxes()
        if boxes is None or not len(boxes):
            return None
        b = boxes.boxes
        inside = np.flatnonzero((b[:, 0] <= x) & (x <= b[:, 2]) & (b[:, 1] <= y) & (y <= b[:, 3]))
        if not len(inside):
            return None
        i = int(inside[np.argmin((b[inside, 2] - b[inside, 0]) * (b[inside, 3] - b[inside, 1]))])
        label, score = boxes.labels[i], float(boxes.scores[i])
        return self.choose_box(
            ChosenBox(label, b[i].copy(), score, self.state.frame, f"the {label} box {score:.2f}")
        )

    def annotation_boxes(self, label: str | None = None) -> list[np.ndarray]:
        """The bounding boxes ``x0, y0, x1, y1`` (pixel edges) of the annotation's regions of
        ``label`` (default: the target) on the frame on screen, one per region."""
        label = label or self.state.target
        image, annotation, frame = self.state.image, self.state.annotation, self.state.frame
        if image is None or annotation is None or not label:
            return []
        out = []
        for region in annotation.regions:
            mask = Annotation(annotation.source, [region]).mask(image, label, self.model.matcher)[frame]
            if mask.any():
                ys, xs = np.nonzero(mask)
                out.append(np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32))
        return out

    def use_annotation_box(self, label: str | None = None) -> ChosenBox | None:
        """Explain a radiologist's box of ``label`` (default: the target) on this frame: the next
        one after the box explained, so repeated calls go round them. Where the detector found no
        box there, D-RISE shows what would make it see one (the CAM and gradient maps are empty)."""
        label = label or self.state.target
        boxes = self.annotation_boxes(label)
        if not boxes:
            self.reports.message.emit(
                f"No annotated box of '{label}' on this slice (File > Open annotation, or Edit > Draw)", 5000
            )
            return None
        current = self.box if self.box is not None and self.box.score is None else None
        at = next((k for k, b in enumerate(boxes) if current is not None and np.allclose(b, current.box)), -1)
        k = (at + 1) % len(boxes)
        where = f"the radiologist's {label} box {k + 1} of {len(boxes)}"
        return self.choose_box(ChosenBox(label, boxes[k], None, self.state.frame, where))

    def choose_box(self, box: ChosenBox) -> ChosenBox:
        """Make ``box`` the one the maps explain: its label becomes the target, the maps of
        another box of it on this frame go, and the ticked methods run."""
        explained, self.box = self.explained_box(), box
        if self.state.target != box.label:
            self.state.target = box.label
        if not box.same(explained):
            image = self.state.image
            if image is not None:
                self.cache.drop(id(image), self.state.model, box.label, box.frame)
                self.layers.rebuild()
            self.explanation.runner.cancel("explain")  # a run of the box before is not this one
        self.box_chosen.emit(box)
        self.reports.message.emit(f"Explaining {box.source}", 5000)
        self.explanation.run_methods()
        return box

    # --- agreement with the annotation ------------------------------------------------------------
    def agreement(self) -> list[Agreement]:
        """Dice and IoU of the model's mask of each label against the annotation of it, over the
        frames predicted; labels the annotation does not mark are left out."""
        p, image, annotation = self.prediction, self.state.image, self.state.annotation
        if p is None or p.masks is None or image is None or annotation is None:
            return []
        out = []
        for k, label in enumerate(p.labels):
            truth = annotation.mask(image, label, self.model.matcher)[p.frames]
            if truth.any():
                ours = p.masks[:, k]
                scores = dice(ours, truth), iou(ours, truth)
                out.append(Agreement(label, *scores, int(ours.sum()), int(truth.sum())))
        return out

    # --- events -----------------------------------------------------------------------------------
    def _got_prediction(self, prediction: Prediction | None) -> None:
        self.prediction = prediction
        self.region = self.box = None
        manifest = self.model.manifest() if prediction is not None and prediction.detections else None
        if manifest is not None and manifest.detection is not None:
            self.threshold = manifest.detection.score_threshold
        self.changed.emit()


__all__ = ["MASK_STYLES", "Agreement", "ChosenBox", "ChosenRegion", "ModelOutputs"]
