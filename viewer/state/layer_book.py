"""Which saliency layers the state holds: the cached maps of the image, model and target on screen,
each method drawn with the style the user gave it (kept across targets and images of one kind:
radiographs share theirs, a CT has its own)."""

from __future__ import annotations

import numpy as np

from viewer.explain.saliency_map import SaliencyMap
from viewer.state.layers import SaliencyLayer, default_display
from viewer.state.map_cache import MapCache
from viewer.state.viewer_state import ViewerState

_STYLE = ("visible", "opacity", "colormap", "low", "high")
# Modalities whose images are projections read as one kind: a style set on a chest film is kept on
# every film (a PNG film has no modality), never carried to a CT or an MR.
_RADIOGRAPHS = frozenset({"", "CR", "DX", "DR", "RG", "MG", "PX", "RF", "XA"})


def style_kind(image) -> str:
    """Which images share a method's style: "radiograph", else the modality ("CT", "MR", ...)."""
    modality = (image.modality if image is not None else "").upper()
    return "radiograph" if modality in _RADIOGRAPHS else modality


class LayerBook:
    """Keeps ``state.layers`` in step with the map cache; layer-wide commands (solo, cycle)."""

    def __init__(self, state: ViewerState, cache: MapCache) -> None:
        self.state = state
        self.cache = cache
        # (kind of image, method) -> display settings, kept across targets and images of that kind
        self.styles: dict[tuple[str, str], dict] = {}
        self.solo = True  # choosing a layer shows it alone
        # An anytime method's estimate so far (a preview: shown, never cached), per method:
        # ((image id, model, target) it is of, the map, its display indices).
        self._previews: dict[str, tuple[tuple, SaliencyMap, np.ndarray | None]] = {}
        state.events.active_layer.connect(lambda *_: self._apply_solo())

    def rebuild(self) -> None:
        """Show the cached maps of this image, model and target (any slice), and the estimates
        still being refined for them."""
        state, image = self.state, self.state.image
        wanted = self.cache.find(id(image), state.model, state.target) if image and state.target else []
        here = (id(image), state.model, state.target)
        previews = [(smap, indices) for key, smap, indices in self._previews.values() if key == here]
        keep = {m.method for m in wanted} | {smap.method for smap, _ in previews}
        for layer in [layer for layer in state.layers if layer.method not in keep]:
            state.layers.remove(layer)
        if state.active_layer and state.layer(state.active_layer) is None and len(state.layers):
            # The selected layer went (an estimate whose run was cancelled): the newest one left is
            # selected and, with "only the selected layer" on, shown, so a map stays on screen.
            state.active_layer = state.layers[-1].method
        for layer in state.layers:
            layer.maps.clear()
        for smap, indices in [(m, self.cache.indices(m)) for m in wanted] + previews:
            layer = state.layer(smap.method)
            if layer is None:
                self._put(smap, indices)
            else:
                layer.add(smap, indices, announce=False)
        for layer in state.layers:
            layer.events.maps.emit(layer.maps, layer.maps)

    def add(self, smap: SaliencyMap, indices: np.ndarray | None = None) -> None:
        """Put a newly computed map on its method's layer (made, on top and selected, if new); it
        replaces the method's estimate so far."""
        self._previews.pop(smap.method, None)
        self._put(smap, indices)

    def preview(self, smap: SaliencyMap, indices: np.ndarray | None = None) -> None:
        """Show an anytime method's estimate so far in its layer, in place of the one before."""
        state = self.state
        self._previews[smap.method] = ((id(state.image), state.model, smap.target), smap, indices)
        self._put(smap, indices)

    def drop_previews(self) -> None:
        """The run refining them stopped: its estimates go from the layers."""
        if self._previews:
            self._previews.clear()
            self.rebuild()

    def _put(self, smap: SaliencyMap, indices: np.ndarray | None) -> None:
        state = self.state
        layer = state.layer(smap.method)
        if layer is not None:
            layer.add(smap, indices)
            return
        key = (style_kind(state.image), smap.method)
        style = self.styles.setdefault(key, default_display(smap))
        layer = SaliencyLayer(smap.method, smap.convention, **style)
        for name in _STYLE:
            getattr(layer.events, name).connect(
                lambda value, *_, n=name, k=key: self.styles[k].__setitem__(n, value)
            )
        layer.add(smap, indices)
        state.layers.append(layer)
        # The newest map is what the user waits for: show it on top, selected; unless the user is
        # working on another layer (a style change must land on the layer it was begun on).
        if not state.layer_held:
            state.active_layer = smap.method

    def set_solo(self, solo: bool) -> None:
        """With "only the selected layer" on, choosing a layer shows it and hides the others, so
        switching methods is one click (or Ctrl+Up/Down) and never a recompute."""
        self.solo = solo
        self._apply_solo()

    def _apply_solo(self) -> None:
        if self.solo and self.state.active() is not None:
            for layer in self.state.layers:
                layer.visible = layer.method == self.state.active_layer

    def toggle_active(self) -> None:
        layer = self.state.active()
        if layer is not None:
            layer.visible = not layer.visible

    def toggle_all(self) -> None:
        show = not any(layer.visible for layer in self.state.layers)
        for layer in self.state.layers:
            layer.visible = show

    def cycle(self, step: int) -> None:
        methods = [layer.method for layer in self.state.layers]
        if methods:
            index = methods.index(self.state.active_layer) if self.state.active_layer in methods else -step
            self.state.active_layer = methods[(index + step) % len(methods)]
