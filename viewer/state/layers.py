"""Saliency layers: one per computed method, each with its own display settings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from psygnal import evented
from psygnal.containers import EventedList

from viewer.explain.registry import title_of
from viewer.explain.saliency_map import SaliencyMap
from viewer.io.overlay import colormap_for, overlay_lut, to_index


@evented
@dataclass(eq=False)
class SaliencyLayer:
    """A method's maps for the current image, model and target, and how they are drawn.

    ``maps`` holds one map per image frame that has been computed (a radiograph has one frame; a
    CT series gets a map per slice it was run on). ``low``/``high`` are the threshold: values below
    ``low`` are transparent and opacity ramps up to ``high``.
    """

    method: str
    convention: str
    maps: dict[int, SaliencyMap] = field(default_factory=dict)
    visible: bool = True
    opacity: float = 0.55
    colormap: str = ""
    low: float = 0.2
    high: float = 1.0
    _indices: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.colormap = self.colormap or colormap_for(self.convention)

    @property
    def title(self) -> str:
        return title_of(self.method)

    @property
    def signed(self) -> bool:
        return self.convention == "signed"

    def display_index(self, frame: int) -> np.ndarray | None:
        """The frame's map as uint8 indices into the layer's lookup table (made once)."""
        if frame not in self.maps:
            return None
        if frame not in self._indices:
            self._indices[frame] = display_indices(self.maps[frame], [frame])[0]
        return self._indices[frame]

    def lut(self) -> np.ndarray:
        """The 256 x 4 RGBA table of the layer's colour map and threshold."""
        return overlay_lut(self.colormap, signed=self.signed, low=self.low, high=self.high)

    def maps_key(self) -> tuple:
        """Which map holds each frame: views that cache what they made of the maps compare it."""
        return tuple(sorted((frame, id(smap)) for frame, smap in self.maps.items()))

    def map_for(self, frame: int) -> SaliencyMap | None:
        return self.maps.get(frame)

    def values(self, frame: int) -> np.ndarray | None:
        """The native-grid values on image frame ``frame``, or None where not computed."""
        smap = self.maps.get(frame)
        return None if smap is None else smap.frame(frame)

    def add(self, smap: SaliencyMap, indices: np.ndarray | None = None, announce: bool = True) -> None:
        """Take a newly computed map (it may cover several frames). ``indices`` are its lookup-table
        indices (``display_indices``) when the worker thread already made them; ``announce=False``
        leaves the ``maps`` event to the caller (one event after several maps)."""
        for i, index in enumerate(smap.frames):
            self.maps[index] = smap
            if indices is not None:
                self._indices[index] = indices[i]
            else:
                self._indices.pop(index, None)
        # Emitted by hand: the dict is mutated in place, which no field event sees.
        if announce:
            self.events.maps.emit(self.maps, self.maps)


def display_indices(smap: SaliencyMap, frames: list[int] | None = None) -> np.ndarray:
    """``(frames, rows, cols)`` uint8 lookup-table indices of a map: made in the worker thread, so
    the GUI thread only swaps tables (thresholds, colour maps) and never touches the floats."""
    rows = [smap.frames.index(f) for f in frames] if frames is not None else slice(None)
    return to_index(smap.array[rows], signed=smap.convention == "signed")


def default_display(smap: SaliencyMap) -> dict[str, float]:
    """Threshold a new layer opens with. CAM and perturbation maps are smooth: hide the weakest
    fifth. Gradient maps are sparse and heavy-tailed (a few pixels hold the maximum), so scaling by
    the maximum would leave them invisible: their ramp tops out at the 99.5th percentile of the
    magnitude instead, as Captum's ``visualize_image_attr`` clips outliers."""
    if smap.convention == "unit":
        return {"low": 0.2, "high": 1.0}
    magnitude = np.abs(smap.grid)  # the model grid: same distribution, 16x fewer values than native
    top = float(np.percentile(magnitude[magnitude > 0], 99.5)) if (magnitude > 0).any() else 1.0
    high = float(np.clip(top, 0.02, 1.0))
    return {"low": round(0.15 * high, 4), "high": round(high, 4)}


class LayerList(EventedList[SaliencyLayer]):
    """The saliency layers in drawing order (last on top), found by method id."""

    def get(self, method: str) -> SaliencyLayer | None:
        return next((layer for layer in self if layer.method == method), None)

    def visible_on(self, frame: int) -> list[SaliencyLayer]:
        return [layer for layer in self if layer.visible and layer.values(frame) is not None]
