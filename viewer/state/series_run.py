"""How "Run methods on every slice" works through a series to show it, and what its status says.
No Qt.

The fast methods go over the whole series first, together (they share one recorded pass per
chunk), then each slow method (``registry.is_slow``: LIME, RISE, occlusion, ...), the quickest
first: Grad-CAM covers every slice in seconds and never waits for LIME. Each goes through the
engine's own chunks of frames (so every map equals the one a single call over the series
computes), the chunk of the slice on screen first and then outwards, and skips the frames the
map cache already holds for every (method, target) of its step. The status names the method and
the slices actually being computed; the overall fraction weighs each step by the registry's
typical seconds, so a LIME step counts for what it costs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from viewer.explain.engine import FRAME_CHUNK
from viewer.explain.registry import is_slow, title_of, typical_seconds


@dataclass(frozen=True)
class Step:
    """One engine call: ``methods`` over ``frames`` (one chunk, or the part of it not cached)."""

    methods: tuple[str, ...]
    frames: tuple[int, ...]

    @property
    def seconds(self) -> float:
        """What the step typically costs, per target."""
        return sum(typical_seconds(m) for m in self.methods) * len(self.frames)


def phases(methods: Sequence[str]) -> list[tuple[str, ...]]:
    """The fast methods together, then each slow one, the quickest first."""
    fast = tuple(m for m in methods if not is_slow(m))
    slow = sorted((m for m in methods if is_slow(m)), key=typical_seconds)
    return ([fast] if fast else []) + [(m,) for m in slow]


def plan(
    methods: Sequence[str],
    targets: Sequence[str],
    n_frames: int,
    around: int,
    known: Mapping[tuple[str, str], Iterable] | None = None,
    chunk: int = FRAME_CHUNK,
) -> list[Step]:
    """The engine calls that compute ``methods`` for ``targets`` over ``n_frames`` frames, in order.
    ``known`` (per (method, target): maps with ``frames``) is what need not be computed again."""
    known = known or {}
    steps = []
    for group in phases(methods):
        keys = [(m, t) for m in group for t in targets]
        covered = set.intersection(*({f for smap in known.get(key, ()) for f in smap.frames} for key in keys))
        chunks: dict[int, list[int]] = {}
        for frame in range(n_frames):
            if frame not in covered:
                chunks.setdefault(frame // chunk, []).append(frame)
        order = sorted(chunks.values(), key=lambda frames: (min(abs(f - around) for f in frames), frames[0]))
        steps += [Step(group, tuple(frames)) for frames in order]
    return steps


def slices_text(frames: Sequence[int], n_frames: int) -> str:
    """``"slices 17-28 of 28"`` (counted from 1, as the viewer shows them)."""
    first, last = min(frames) + 1, max(frames) + 1
    span = f"slice {first}" if first == last else f"slices {first}-{last}"
    gaps = "" if last - first + 1 == len(frames) else f" ({len(frames)} of them)"
    return f"{span}{gaps} of {n_frames}"


class SeriesProgress:
    """Turns the engine's per-method progress within a step into the run's status text and
    overall fraction."""

    def __init__(self, steps: Sequence[Step], n_frames: int) -> None:
        self.steps = list(steps)
        self.n_frames = n_frames
        self.total = sum(step.seconds for step in self.steps) or 1.0
        self._before = [sum(step.seconds for step in self.steps[:i]) for i in range(len(self.steps))]

    def at(self, index: int, method: str, fraction: float) -> tuple[str, float]:
        """Status and overall fraction while step ``index`` computes ``method`` at ``fraction``."""
        step = self.steps[index]
        done = self._before[index]
        if method in step.methods:
            position = step.methods.index(method)
            done += sum(typical_seconds(m) for m in step.methods[:position]) * len(step.frames)
            done += typical_seconds(method) * len(step.frames) * min(max(fraction, 0.0), 1.0)
        text = f"{title_of(method)}: {slices_text(step.frames, self.n_frames)}"
        if len(self.steps) > 1:
            text += f" (step {index + 1} of {len(self.steps)})"
        return text, min(done / self.total, 1.0)
