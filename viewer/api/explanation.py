"""What :func:`viewer.explain` returns: the maps, the probabilities and the scores of one image,
readable as plain Python and numpy, saved as the ``explain`` command saves a study, and drawn.

Everything here is computed already; reading it costs nothing. Drawing needs matplotlib only for
:meth:`Explanation.plot` (the ``notebook`` extra); the inline picture a notebook shows
(``_repr_png_``) is made with Pillow, so it also works where matplotlib is absent.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from viewer.batch.explain_study import COLUMNS, write_map, write_predictions
from viewer.batch.row_files import RowAppender
from viewer.explain.comparison import MapScores
from viewer.explain.engine import Explanation as EngineResult
from viewer.explain.registry import title_of
from viewer.explain.saliency_map import SaliencyMap
from viewer.io import Image
from viewer.io.overlay import map_over_frame
from viewer.io.voi import to_display

# Scores a notebook table shows (the rest of metrics.csv's columns are kept in ``metrics`` too).
_SHOWN = ("pointing_game", "energy_inside", "iou_otsu", "auprc")


@dataclass
class Explanation:
    """The maps of one image. ``expl["gradcam"]`` is the Grad-CAM map on the image's grid, the
    array ``saliency-viewer explain`` writes as ``gradcam.npy``: ``(H, W)``, or ``(frames, H, W)``
    for a series. ``expl["gradcam", "effusion"]`` picks a target when several were explained."""

    model_name: str
    image: Image
    result: EngineResult
    scores: list[MapScores] = field(default_factory=list)
    annotation: np.ndarray | None = None  # (frames, H, W) bool, the explained target's mask
    notes: list[str] = field(default_factory=list)

    # --- reading -------------------------------------------------------------------------------

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.method for m in self.result.maps))

    @property
    def targets(self) -> tuple[str, ...]:
        return self.result.targets

    @property
    def labels(self) -> tuple[str, ...]:
        return self.result.labels

    @property
    def probabilities(self) -> dict[str, float]:
        """Label -> probability (a series: the largest over its frames), in the model's order."""
        p = self.result.probabilities
        return {label: float(p[:, i].max()) for i, label in enumerate(self.labels)}

    def saliency_map(self, method: str, target: str | None = None) -> SaliencyMap:
        """The full map object (both grids, scale, convention, notes)."""
        try:
            return self.result.get(method, target)
        except KeyError:
            raise KeyError(
                f"no {method!r} map{f' for {target!r}' if target else ''}; "
                f"methods: {', '.join(self.methods)}; targets: {', '.join(self.targets)}"
            ) from None

    def __getitem__(self, key: str | tuple[str, str]) -> np.ndarray:
        method, target = key if isinstance(key, tuple) else (key, None)
        smap = self.saliency_map(method, target)
        return smap.array if self.image.n_frames > 1 else smap.array[0]

    def grid(self, method: str, target: str | None = None) -> np.ndarray:
        """The map on the network's input grid (before any resampling to the image)."""
        smap = self.saliency_map(method, target)
        return smap.grid if self.image.n_frames > 1 else smap.grid[0]

    def __iter__(self) -> Iterator[str]:
        return iter(self.methods)

    def __len__(self) -> int:
        return len(self.methods)

    def __contains__(self, method: object) -> bool:
        return method in self.methods

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """One row per map: method, target, probability, seconds and every score (None where not
        computed: localization needs an ``annotation``)."""
        p = self.probabilities
        return [
            {"method": s.method, "target": s.target, "probability": p[s.target]}
            | {k: v for k, v in vars(s).items() if k not in ("method", "target")}
            for s in self.scores
        ]

    def to_dataframe(self):
        """:attr:`metrics` as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_dataframe needs pandas: pip install 'saliency-viewer[notebook]'") from None
        return pd.DataFrame(self.metrics)

    # --- saving --------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write what ``saliency-viewer explain`` writes for one study into ``folder`` (created;
        existing files are never overwritten): ``predictions.json``, ``<method>.npy`` and
        ``<method>.png`` per map, and ``metrics.csv``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        predictions = write_predictions(folder, self.model_name, self.result, None)
        several = len(self.targets) > 1
        for smap in self.result.maps:
            best = int(np.argmax(self.result.probabilities[:, smap.target_index]))
            write_map(folder, self.image, smap, best, several_targets=several)
        name = self.image.identity.series_description or "image"
        with RowAppender(folder / "metrics.csv", COLUMNS) as append:
            append(
                [
                    {"image": name, "probability": f"{predictions[s.target]:.4f}"} | s.as_row()
                    for s in self.scores
                ]
            )
        return folder

    # --- drawing -------------------------------------------------------------------------------

    def _key_frame(self, smap: SaliencyMap) -> int:
        return int(np.argmax(self.result.probabilities[:, smap.target_index]))

    def overlays(self) -> list[tuple[str, np.ndarray]]:
        """(caption, RGB uint8 picture) of the image and of each map over it (key frame)."""
        first = self.result.maps[0] if self.result.maps else None
        frame = first.frames[self._key_frame(first)] if first else 0
        grey = (np.clip(to_display(self.image, frame), 0, 1) * 255).astype(np.uint8)
        base = grey if grey.ndim == 3 else np.repeat(grey[..., None], 3, axis=-1)
        out = [(self.model_name, _outlined(base, self._mask(frame)))]
        for smap in self.result.maps:
            key = self._key_frame(smap)
            rgb = map_over_frame(self.image, smap.frames[key], smap.array[key], smap.convention)
            out.append((self._caption(smap), _outlined(rgb, self._mask(smap.frames[key]))))
        return out

    def _mask(self, frame: int) -> np.ndarray | None:
        return None if self.annotation is None else self.annotation[frame]

    def _caption(self, smap: SaliencyMap) -> str:
        text = f"{title_of(smap.method)}: {smap.target} {self.probabilities[smap.target]:.3f}"
        for s in self.scores:
            if s.method == smap.method and s.target == smap.target and s.energy_inside is not None:
                text += f" | energy {s.energy_inside:.2f}, hit {'yes' if s.pointing_game else 'no'}"
        return text

    def plot(self, columns: int = 4):
        """A matplotlib figure: the image (annotation outlined), each map over it, captions with
        the probability and, with an annotation, the energy inside it and the pointing game."""
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError("plot needs matplotlib: pip install 'saliency-viewer[notebook]'") from None
        pictures = self.overlays()
        cols = min(columns, len(pictures))
        rows = -(-len(pictures) // cols)
        figure = Figure(figsize=(3.2 * cols, 3.4 * rows), layout="constrained")
        axes = np.atleast_1d(figure.subplots(rows, cols, squeeze=False)).ravel()
        for ax, (caption, rgb) in zip(axes, pictures, strict=False):
            ax.imshow(rgb)
            ax.set_title(caption, fontsize=8, wrap=True)
        for ax in axes:
            ax.set_axis_off()
        return figure

    def _repr_png_(self) -> bytes:
        """The inline picture of a Jupyter or Colab cell: the image and each map, side by side."""
        from PIL import Image as PILImage

        pictures = [rgb for _, rgb in self.overlays()]
        height = 256
        scaled = [
            PILImage.fromarray(p).resize((max(1, round(p.shape[1] * height / p.shape[0])), height))
            for p in pictures
        ]
        sheet = PILImage.new("RGB", (sum(s.width for s in scaled) + 4 * (len(scaled) - 1), height), "white")
        x = 0
        for s in scaled:
            sheet.paste(s, (x, 0))
            x += s.width + 4
        buffer = io.BytesIO()
        sheet.save(buffer, format="PNG")
        return buffer.getvalue()

    def _repr_html_(self) -> str:
        """The picture with the captions and the scores as a table under it."""
        png = base64.b64encode(self._repr_png_()).decode()
        captions = " &middot; ".join(html.escape(c) for c, _ in self.overlays())
        top = sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:5]
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in top)
        scores = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(_text(row.get(c)))}</td>" for c in ("method", "target", *_SHOWN))
            + "</tr>"
            for row in self.metrics
        )
        head = "".join(f"<th>{c}</th>" for c in ("method", "target", *_SHOWN))
        return (
            f'<div><img src="data:image/png;base64,{png}"/><p>{captions}</p>'
            f"<table><tr><th>label</th><th>probability</th></tr>{rows}</table>"
            f"<table><tr>{head}</tr>{scores}</table></div>"
        )

    def __repr__(self) -> str:
        top = max(self.probabilities.items(), key=lambda kv: kv[1])
        return (
            f"<Explanation {self.model_name}: {top[0]} {top[1]:.3f}; "
            f"maps {', '.join(self.methods)} for {', '.join(self.targets)}>"
        )

    def to_json(self) -> str:
        """Probabilities and metrics as JSON (maps are arrays: see :meth:`save`)."""
        return json.dumps({"probabilities": self.probabilities, "metrics": self.metrics}, default=str)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _outlined(rgb: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``rgb`` with the annotation's boundary pixels drawn in green."""
    if mask is None or not mask.any():
        return rgb
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    out = rgb.copy()
    out[mask & ~inner] = (0, 220, 90)
    return out


__all__ = ["Explanation"]
