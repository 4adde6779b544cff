"""What the slice strip draws, per slice of the series on screen: the model's probability of the
target and the strongest value of the selected map. ``session.slices``; computed here, not in
the widget, so it is tested without Qt and a view only paints it. No Qt.
"""

from __future__ import annotations

import numpy as np
from psygnal import Signal

from viewer.state.layers import SaliencyLayer
from viewer.state.model_in_use import ModelInUse
from viewer.state.viewer_state import ViewerState


def slice_strengths(layer: SaliencyLayer | None, frames: int) -> np.ndarray | None:
    """The strongest magnitude of ``layer``'s map on each of ``frames`` slices (NaN where it was
    not computed); None without maps. Read on the model grid (a few times smaller than the
    native one, and the native map is its interpolation), so a 200-slice series costs little."""
    if layer is None or not layer.maps:
        return None
    out = np.full(frames, np.nan, np.float32)
    for frame, smap in layer.maps.items():
        if frame < frames:
            out[frame] = float(np.abs(smap.frame_grid(frame)).max())
    return out


class SliceProfile:
    """``probability`` and ``strength`` (one value a slice, or None), refreshed when the image,
    target, prediction, selected layer or its maps change; ``changed`` after each refresh."""

    changed = Signal()

    def __init__(self, state: ViewerState, model: ModelInUse) -> None:
        self.state, self.model = state, model
        self.probability: np.ndarray | None = None
        self.strength: np.ndarray | None = None
        self._held: tuple = ()  # (layer, maps key) the strengths were measured for
        self._follow: SaliencyLayer | None = None  # the layer whose maps event is connected
        events = state.events
        events.image.connect(self.refresh)
        events.target.connect(self.refresh)
        events.active_layer.connect(self.refresh)
        model.predicted.connect(self.refresh)
        state.layers.events.removed.connect(self.refresh)

    def refresh(self, *_args) -> None:
        state, prediction, target = self.state, self.model.prediction, self.state.target
        self.probability = None
        # A 3-D model has one probability for the series: no slice-by-slice row to draw.
        per_slice = prediction is not None and not prediction.per_volume
        if per_slice and target in prediction.labels and state.image is not None:
            column = prediction.probabilities[:, prediction.labels.index(target)]
            if len(column) == state.image.n_frames:
                self.probability = np.asarray(column, np.float32)
        layer = state.active()
        if self._follow is not layer:
            if self._follow is not None:
                self._follow.events.maps.disconnect(self.refresh)
            if layer is not None:
                layer.events.maps.connect(self.refresh)
            self._follow = layer
        key = (id(layer), layer.maps_key()) if layer else ()
        if key != self._held:
            frames = state.image.n_frames if state.image is not None else 0
            self.strength, self._held = slice_strengths(layer, frames), key
        self.changed.emit()
