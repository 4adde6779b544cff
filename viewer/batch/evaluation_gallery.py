"""The best and worst images of each label x method of an evaluation, kept as small pictures (the
map over the image, the annotation outlined) for the report.

Only the current ``k`` best and ``k`` worst by IoU are on disk at any time (``DIR/thumbnails``):
an image that drops out of both is deleted, so the folder stays small over 10^5 images. A run
that resumes rebuilds the ranking from ``per_image.csv``; the images it ranks were written when
they were evaluated (whatever is among the k best of all images is among the k best of those seen
before it), and files an interrupted run left behind are pruned at the end.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from viewer.io.atomic import replace_bytes

Entry = tuple[float, str]  # (IoU, image name): ties fall to the name, so reruns choose alike


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


class Gallery:
    def __init__(self, folder: Path, k: int = 3):
        self.folder, self.k = folder, k
        self._entries: dict[tuple[str, str], list[Entry]] = {}

    def path(self, label: str, method: str, image: str) -> Path:
        return self.folder / _slug(label) / _slug(method) / f"{_slug(image)}.png"

    def chosen(self, label: str, method: str) -> tuple[list[Entry], list[Entry]]:
        """The best (highest IoU first) and the worst (lowest first), up to ``k`` each; an image
        is in one only, so with fewer than ``2k`` images the upper half are the best."""
        ranked = sorted(self._entries.get((label, method), []))
        n_best = min(self.k, (len(ranked) + 1) // 2)
        best = ranked[::-1][:n_best]
        return best, ranked[: min(self.k, len(ranked) - n_best)]

    def note(self, label: str, method: str, image: str, iou: float) -> tuple[bool, list[Entry]]:
        """Rank an image without drawing it (a resumed run's earlier rows); whether it is kept,
        and the entries it pushed out."""
        key = (label, method)
        entries = [*self._entries.get(key, []), (iou, image)]
        ranked = sorted(entries)
        kept = ranked[: self.k] + [e for e in ranked[-self.k :] if e not in ranked[: self.k]]
        self._entries[key] = kept
        return (iou, image) in kept, [e for e in entries if e not in kept]

    def offer(self, label: str, method: str, image: str, iou: float, draw: Callable[[], bytes]) -> None:
        """Rank an image just evaluated; draw and write its picture if it is kept."""
        kept, dropped = self.note(label, method, image, iou)
        if kept:
            replace_bytes(self.path(label, method, image), draw())
        for _, name in dropped:
            self.path(label, method, name).unlink(missing_ok=True)

    def prune(self) -> None:
        """Delete pictures that are no longer chosen (left by an interrupted run)."""
        if not self.folder.is_dir():
            return
        keep = {
            self.path(label, method, name)
            for (label, method), entries in self._entries.items()
            for _, name in entries
        }
        for path in self.folder.rglob("*.png"):
            if path not in keep:
                path.unlink()
