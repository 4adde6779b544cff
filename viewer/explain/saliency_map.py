"""The value a saliency method hands to the rest of the product."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

# How to read a map's values:
#   "unit":     non-negative evidence scaled to [0, 1] (CAM and perturbation maps);
#   "absolute": magnitude of a gradient-like signal scaled to [0, 1];
#   "signed":   signed attribution scaled by its largest magnitude to [-1, 1] (show diverging).
Convention = Literal["unit", "absolute", "signed"]


@dataclass
class SaliencyMap:
    """One method's map for one target label over one or more frames of an image.

    ``array`` is float32 ``(frames, rows, cols)`` on the image's native pixel grid (a radiograph
    has one frame, a CT series one per slice). ``grid`` is the same map on the model-input grid
    ``(frames, H, W)``, which faithfulness metrics perturb; a 3-D model's map (``volume``) has
    one input for all its frames, and ``grid`` is that input's ``(D, H, W)``. Both are scaled
    together by ``scale``: the raw maximum (magnitude) over all frames, kept so maps of weak and
    strong evidence can still be told apart after scaling.

    ``progress`` is empty for a finished map; an anytime method's estimate so far (a preview,
    replaced as samples arrive) says how far it got there, e.g. ``"300/1000 samples"``.
    """

    method: str
    target: str
    target_index: int
    frames: tuple[int, ...]
    array: np.ndarray
    grid: np.ndarray
    convention: Convention
    scale: float
    seconds: float
    class_sensitive: bool = True
    params: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    volume: bool = False
    progress: str = ""
    # A detector's map explains one box: its index in the frame's detections (None otherwise).
    box: int | None = None

    def frame(self, index: int) -> np.ndarray:
        """The native-grid map of image frame ``index`` (a frame this map covers)."""
        return self.array[self.frames.index(index)]

    def frame_grid(self, index: int) -> np.ndarray:
        """Frame ``index``'s map at the model's resolution where the model saw that frame alone;
        a 3-D model's frame from the native map (its input had no frames of its own)."""
        return self.frame(index) if self.volume else self.grid[self.frames.index(index)]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape


def on_one_scale(parts: list[SaliencyMap]) -> SaliencyMap:
    """Maps of one method and target computed over different frames (a series explained a few
    slices at a time), as one map over all their frames on one scale: the largest raw magnitude
    of them all, as if they had been computed together. Each map's values are its raw values over
    its ``scale``, so rescaling is exact. Where two cover a frame, the later one's values count.
    With a preview among them (``progress``), the result is one too and says what the last says."""
    chosen: dict[int, tuple[SaliencyMap, int]] = {}
    for part in parts:
        for row, frame in enumerate(part.frames):
            chosen[frame] = (part, row)
    frames = tuple(sorted(chosen))
    top = max(part.scale for part, _ in chosen.values())

    def joined(name: str) -> np.ndarray:
        rows = [
            getattr(part, name)[row] * np.float32(part.scale / top if top > 0 else 1.0)
            for part, row in (chosen[f] for f in frames)
        ]
        return np.stack(rows).astype(np.float32, copy=False)

    first = parts[0]
    preview = next((part for part in reversed(parts) if part.progress), None)
    seconds = sum(part.seconds for part in {id(p): p for p, _ in chosen.values()}.values())
    return SaliencyMap(
        first.method, first.target, first.target_index, frames, joined("array"), joined("grid"),
        first.convention, top, seconds, first.class_sensitive, dict(first.params),
        list((preview or first).notes), first.volume, preview.progress if preview else "",
    )  # fmt: skip
