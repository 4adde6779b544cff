"""The viewer's state: image, slice, windowing, saliency layers, annotation, model and target."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Literal

from psygnal import evented

from viewer.io.annotations import Annotation
from viewer.io.image import Image, VoiLut, Window
from viewer.io.presets import load_presets
from viewer.io.voi import auto_window, default_voi
from viewer.state.layers import LayerList

# Narrowest window a drag may reach, as a fraction of the image's value range (a zero width
# would divide by zero in the display mapping).
_MIN_WIDTH_FRACTION = 1e-4


# An annotation is told apart by identity: each image has its own object (edited in place by
# drawing, and announced then), and comparing two by value would compare their masks.
@evented(equality_operators={"annotation": operator.is_})
@dataclass(eq=False)
class ViewerState:
    """Everything a view of the current image needs, with an event per field (``state.events.X``).

    ``layers`` is an evented list of its own (``state.layers.events``), so adding a map does not
    rebuild the views of the others.
    """

    image: Image | None = None
    frame: int = 0
    voi: Window | VoiLut | None = None
    invert: bool = False
    annotation: Annotation | None = None
    show_annotation: bool = True
    annotation_style: Literal["outline", "fill"] = "outline"
    show_corners: bool = True
    model: str = ""
    target: str = ""
    active_layer: str = ""
    # The user chose the active layer, or is styling it: a map that finishes does not take the
    # selection from it (until the next run or image).
    layer_held: bool = False
    layers: LayerList = field(default_factory=LayerList)

    def open(self, image: Image) -> None:
        """Show a newly loaded image: its own window, middle slice of a volume, no layers yet.

        Frame, window and inversion are set before the image, silently, so a view that redraws on
        the image event never pairs the new image with the old slice (slice 14 of a CT on a film).
        """
        self.layers.clear()
        self.active_layer = ""
        self.layer_held = False
        self.annotation = None
        self.target = ""
        events = self.events
        with events.frame.blocked(), events.voi.blocked(), events.invert.blocked():
            self.frame = image.n_frames // 2 if image.is_volume else 0
            self.voi = default_voi(image) or self.auto_window_for(image, image.n_frames // 2)
            self.invert = image.invert
        self.image = image
        events.frame.emit(self.frame, self.frame)
        events.voi.emit(self.voi, self.voi)

    def close(self) -> None:
        """Show nothing: no image, slice, layers, annotation or target (a study that failed to
        load leaves nothing of the one before it on screen)."""
        self.layers.clear()
        self.active_layer = ""
        self.layer_held = False
        self.annotation = None
        self.target = ""
        with self.events.frame.blocked():
            self.frame = 0
        self.image = None

    def auto_window_for(self, image: Image, frame: int) -> Window:
        table = load_presets()
        return auto_window(image.frame(frame), table.low_percentile, table.high_percentile)

    def set_frame(self, frame: int) -> None:
        if self.image is not None:
            self.frame = max(0, min(self.image.n_frames - 1, frame))

    def step_frame(self, step: int) -> None:
        self.set_frame(self.frame + step)

    def set_window(self, center: float, width: float, name: str = "") -> None:
        """A window chosen by hand (drag, preset or typed): keeps the image's window function."""
        function = self.voi.function if isinstance(self.voi, Window) else "LINEAR"
        width = max(width, self._min_width())
        self.voi = Window(center, width, function, name, "preset" if name else "auto")

    def adjust_window(self, d_center: float, d_width: float) -> None:
        center, width = self.window_values()
        self.set_window(center + d_center, width + d_width)

    def window_values(self) -> tuple[float, float]:
        """Centre and width now in effect (a VOI LUT reports the range it maps)."""
        voi = self.voi
        if isinstance(voi, Window):
            return voi.center, voi.width
        if isinstance(voi, VoiLut):
            return voi.first_mapped + len(voi.table) / 2, float(len(voi.table))
        return 0.5, 1.0

    def reset_window(self) -> None:
        if self.image is not None:
            self.voi = default_voi(self.image) or self.auto_window_for(self.image, self.frame)

    def value_range(self) -> tuple[float, float]:
        if self.image is None or self.image.is_color:
            return 0.0, 255.0
        pixels = self.image.pixels
        return float(pixels.min()), float(pixels.max())

    def _min_width(self) -> float:
        low, high = self.value_range()
        return max((high - low) * _MIN_WIDTH_FRACTION, 1e-6)

    def layer(self, method: str):
        return self.layers.get(method)

    def active(self):
        """The layer whose colour bar, threshold and cursor value are shown."""
        return self.layers.get(self.active_layer)
