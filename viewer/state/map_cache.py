"""Computed maps kept per (image, frame, model, target, method), so nothing is computed twice."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from viewer.explain.saliency_map import SaliencyMap


@dataclass(frozen=True)
class MapKey:
    image: int  # id() of the opened Image: a reopened file is a new image
    frame: int
    model: str
    target: str
    method: str


class MapCache:
    """A bounded LRU cache of maps; a multi-frame map is stored once per frame it covers."""

    def __init__(self, max_bytes: int = 2 * 1024**3):
        self.max_bytes = max_bytes
        self._maps: OrderedDict[MapKey, SaliencyMap] = OrderedDict()
        self._order = itertools.count()
        self._added: dict[int, int] = {}  # id(map) -> when it was first stored
        # id(map) -> its display indices, made by the worker (the GUI thread must not redo them).
        self._indices: dict[int, np.ndarray] = {}

    def put(self, image: int, model: str, smap: SaliencyMap, indices: np.ndarray | None = None) -> None:
        self._added.setdefault(id(smap), next(self._order))
        if indices is not None:
            self._indices[id(smap)] = indices
        for frame in smap.frames:
            key = MapKey(image, frame, model, smap.target, smap.method)
            self._maps[key] = smap
            self._maps.move_to_end(key)
        self._evict()

    def get(self, key: MapKey) -> SaliencyMap | None:
        smap = self._maps.get(key)
        if smap is not None:
            self._maps.move_to_end(key)
        return smap

    def indices(self, smap: SaliencyMap) -> np.ndarray | None:
        """The display indices stored with ``smap`` (``(frames, rows, cols)`` uint8), if any."""
        return self._indices.get(id(smap))

    def find(self, image: int, model: str, target: str) -> list[SaliencyMap]:
        """Every cached map of an image for a model and target (any frame), in computing order."""
        seen: dict[int, SaliencyMap] = {}
        for key, smap in self._maps.items():
            if (key.image, key.model, key.target) == (image, model, target):
                seen.setdefault(id(smap), smap)
        return sorted(seen.values(), key=lambda m: self._added[id(m)])

    def missing(self, image: int, frame: int, model: str, target: str, methods: list[str]) -> list[str]:
        return [m for m in methods if MapKey(image, frame, model, target, m) not in self._maps]

    def drop(self, image: int, model: str, target: str, frame: int) -> None:
        """Forget the maps of one target on one frame: they explain a region no longer chosen (a
        segmenter's target is a region, and the key names only its label)."""
        wanted = (image, model, target, frame)
        for key in [k for k in self._maps if (k.image, k.model, k.target, k.frame) == wanted]:
            del self._maps[key]
        self._forget_unused()

    def drop_image(self, image: int) -> None:
        for key in [k for k in self._maps if k.image == image]:
            del self._maps[key]
        self._forget_unused()

    def __len__(self) -> int:
        return len(self._maps)

    def _nbytes(self) -> int:
        unique = {id(m): m for m in self._maps.values()}
        return sum(
            m.array.nbytes + m.grid.nbytes + getattr(self._indices.get(k), "nbytes", 0)
            for k, m in unique.items()
        )

    def _evict(self) -> None:
        while self._maps and self._nbytes() > self.max_bytes:
            self._maps.popitem(last=False)
        self._forget_unused()

    def _forget_unused(self) -> None:
        live = {id(m) for m in self._maps.values()}
        self._added = {k: v for k, v in self._added.items() if k in live}
        self._indices = {k: v for k, v in self._indices.items() if k in live}
