"""Per-map scores for comparing saliency maps: against an annotation, against the model, and
against each other. The GUI's comparison panel and the headless CLI both score maps here, so a
number means the same thing wherever it is shown.

``score_map`` runs, in order and each only where it applies: localization against an annotation
mask (and the pointing game on a burned-in marker), deletion/insertion on the model-input grid,
and the cascading model-randomisation sanity check. ``agreement`` gives the pairwise Spearman and
SSIM matrices of several maps of one frame, for comparing methods when there is no annotation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from viewer.explain.context import CancelFlag, Cancelled, ExplainContext
from viewer.explain.faithfulness import causal_curves
from viewer.explain.localization import localization, pointing_game
from viewer.explain.metric_catalog import column_of
from viewer.explain.registry import get_method
from viewer.explain.saliency_map import SaliencyMap
from viewer.explain.sanity import cascading_randomization
from viewer.explain.similarity import spearman_matrix, ssim, unit_scaled
from viewer.inference.feature_grid import NCHW
from viewer.inference.model import LoadedModel
from viewer.io.image import Image

# Below this change of the target's probability between the image and the blurred substrate that
# deletion ends at and insertion starts from, the blur keeps the evidence (a large heart still
# reads as cardiomegaly) or never had it, and every map gets about the same deletion and insertion
# AUC: the curves cannot rank the maps for this target.
MIN_SUBSTRATE_DROP = 0.1


@dataclass
class MapScores:
    """Every score of one map on one image frame; ``None`` where a score was not computed (no
    annotation of the target, no marker, deletion/insertion or sanity not asked for)."""

    method: str
    target: str
    frame: int  # index into the image's frames
    seconds: float  # the map's compute time
    pointing_game: bool | None = None
    pointing_game_marker: bool | None = None
    iou_otsu: float | None = None
    dice_otsu: float | None = None
    iou_top: float | None = None
    energy_inside: float | None = None
    auprc: float | None = None
    deletion_auc: float | None = None
    insertion_auc: float | None = None
    substrate_drop: float | None = None  # target probability on the image minus on the blurred one
    sanity_spearman: float | None = None
    sanity_verdict: str | None = None

    @property
    def faithfulness_uninformative(self) -> bool:
        """True when the deletion/insertion AUCs were computed but cannot rank maps: blurring the
        whole image barely changes the target's probability (see ``MIN_SUBSTRATE_DROP``)."""
        return self.substrate_drop is not None and abs(self.substrate_drop) < MIN_SUBSTRATE_DROP

    def as_row(self) -> dict[str, str]:
        """Table cells keyed by the CLI's metrics.csv column names (the metric catalogue's): ""
        for a missing score, "1"/"0" for the pointing games, 4 decimals for scores, 3 for seconds."""
        row = {"method": self.method, "target": self.target, "seconds": f"{self.seconds:.3f}"}
        for name in _ROW_SCORES:
            row[column_of(name, "metrics.csv")] = _cell(getattr(self, name))
        row["sanity_verdict"] = self.sanity_verdict or ""
        return row


# metrics.csv's score columns after method, target and seconds, in the order it has always had.
_ROW_SCORES = (
    "pointing_game", "iou_otsu", "energy_inside", "deletion_auc", "insertion_auc", "substrate_drop",
    "dice_otsu", "iou_top", "auprc", "pointing_game_marker", "sanity_spearman",
)  # fmt: skip


def score_map(
    model: LoadedModel,
    image: Image,
    smap: SaliencyMap,
    frame: int,
    *,
    mask: np.ndarray | None = None,
    marker: np.ndarray | None = None,
    steps: int | None = 50,
    sanity: bool = False,
    seed: int = 0,
    cancel: CancelFlag | None = None,
    on_progress: Callable[[str, float], None] | None = None,
) -> MapScores:
    """Scores of ``smap`` on image frame ``frame`` (one of ``smap.frames``: for a series, the slice
    on screen or the key slice).

    ``mask`` (the target's annotation) and ``marker`` are bool ``(rows, cols)`` masks of that frame;
    either may instead cover every frame of the map, shaped as ``smap.array``, to score the whole
    volume (the CLI's one row per series). Localization runs only where the mask has pixels;
    deletion/insertion (``steps`` > 0, or None for steps adapted to the input size) and the
    sanity check (``seed`` for its re-initialisation) always use the one frame. A set ``cancel``
    flag raises ``Cancelled`` between and within the stages; ``on_progress(stage, fraction)``
    reports "deletion/insertion" and "sanity".
    """
    if frame not in smap.frames:
        raise ValueError(f"the {smap.method} map covers frames {smap.frames}, not frame {frame}")
    index = smap.frames.index(frame)
    scores = MapScores(smap.method, smap.target, frame, smap.seconds)

    _check(cancel)
    if marker is not None:
        scores.pointing_game_marker = pointing_game(*_on_map_grid(smap, index, marker, "marker"))
    if mask is not None:
        saliency, region = _on_map_grid(smap, index, mask, "mask")
        if region.any():
            loc = localization(saliency, region)
            scores.pointing_game = loc.pointing_game
            scores.iou_otsu, scores.dice_otsu, scores.iou_top = loc.iou_otsu, loc.dice_otsu, loc.iou_top
            scores.energy_inside, scores.auprc = loc.energy_inside, loc.auprc
    curves = steps is None or steps > 0
    if smap.volume:  # deletion/insertion and the sanity check perturb one 2-D input
        curves = sanity = False
    if not curves and not sanity:
        return scores

    # Gradients are needed for the sanity check even if the caller holds inference mode (as explain).
    with torch.inference_mode(False):
        inputs = model.prepare(image, frame)[0][None].to(model.device)
        if curves:
            _check(cancel)
            with ExplainContext.for_model(
                model,
                inputs,
                cancel=cancel,
                progress=_stage(on_progress, "deletion/insertion"),
            ) as ctx:
                deletion, insertion = causal_curves(ctx, smap.grid[index], smap.target_index, steps=steps)
            scores.deletion_auc, scores.insertion_auc = deletion.auc, insertion.auc
            scores.substrate_drop = float(deletion.scores[0] - deletion.scores[-1])
        if sanity:
            _check(cancel)
            result = cascading_randomization(
                model.network,
                model.target_layer,
                inputs,
                get_method(smap.method, **smap.params),
                smap.target_index,
                task=model.manifest.task,
                head=model.head,
                grid=model.grid or NCHW,
                seed=seed,
                cancel=cancel,
                progress=_stage(on_progress, "sanity"),
            )
            scores.sanity_spearman = result.stages[-1].spearman if result.stages else None
            scores.sanity_verdict = result.verdict
    return scores


def agreement(maps: Sequence[SaliencyMap], frame_index: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Labels and the symmetric ``(n, n)`` Spearman and SSIM matrices of ``maps`` on image frame
    ``frame_index``, compared on the model-input grid (the maps' own resolution, not the native
    grid's interpolation) after min-max scaling; signed maps by magnitude, as the sanity check."""
    if not maps:
        return [], np.zeros((0, 0)), np.zeros((0, 0))
    labels, grids, rho = _ranked(maps, frame_index)
    n = len(grids)
    structural = np.eye(n)  # a map agrees with itself
    for i in range(n):
        for j in range(i + 1, n):
            structural[i, j] = structural[j, i] = ssim(grids[i], grids[j])
    return labels, rho, structural


def _ranked(maps: Sequence[SaliencyMap], frame_index: int) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """The maps' labels, their comparable grids on ``frame_index`` and the Spearman matrix."""
    grids = [_comparable(m, frame_index) for m in maps]
    if len({g.shape for g in grids}) > 1:
        raise ValueError(f"maps on different grids: {sorted({g.shape for g in grids})}")
    several_targets = len({m.target for m in maps}) > 1
    labels = [f"{m.method} ({m.target})" if several_targets else m.method for m in maps]
    # A map agrees with itself: the diagonal is 1, where spearman() would say 0 for a constant map.
    return labels, grids, spearman_matrix(grids)


def mean_agreement(names: Sequence[str], rho: np.ndarray) -> dict[str, float | None]:
    """Each map's mean Spearman rank correlation with the other maps (``agreement``'s names and
    matrix): the metric catalogue's ``agreement``, "Agreement (mean rho)". None for a map with no
    other to agree with. The Compare panel and ``saliency-viewer explain``'s metrics.csv both take
    it from here, so the window and the CSV show the same number for the same maps."""
    n = len(names)
    return {
        name: float(np.mean([rho[i, j] for j in range(n) if j != i])) if n > 1 else None
        for i, name in enumerate(names)
    }


def map_agreement(result) -> dict[int, float | None]:
    """Each map's (by ``id``) mean Spearman agreement with the other maps of its target, on the
    target's key slice (where it is most probable; a film's only frame): the numbers the Compare
    panel shows for the same maps on that slice (``mean_agreement``), and the ``agreement`` column
    of ``explain``'s metrics.csv and ``evaluate``'s per_image.csv. Maps on different grids are not
    compared (no value), as the panel cannot compare them either."""
    groups: dict[tuple, list] = {}
    for smap in result.maps:  # a detector's maps: one group per box
        groups.setdefault((smap.target, getattr(smap, "box", None)), []).append(smap)
    out: dict[int, float | None] = {}
    for maps in groups.values():
        best = int(np.argmax(result.probabilities[:, maps[0].target_index]))
        try:  # Spearman only: the column has no use for SSIM, which costs as much again
            names, _grids, rho = _ranked(maps, maps[0].frames[best])
        except ValueError:
            continue
        for smap, value in zip(maps, mean_agreement(names, rho).values(), strict=True):
            out[id(smap)] = value
    return out


def _comparable(smap: SaliencyMap, frame: int) -> np.ndarray:
    if frame not in smap.frames:
        raise ValueError(f"the {smap.method} map covers frames {smap.frames}, not frame {frame}")
    grid = smap.frame_grid(frame)
    return unit_scaled(np.abs(grid) if smap.convention == "signed" else grid)


def _on_map_grid(smap: SaliencyMap, index: int, mask: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The map and ``mask`` on one grid: the frame's map for a frame's mask, every frame's map for
    a mask over all of them."""
    mask = np.asarray(mask, bool)
    if mask.shape == smap.array.shape:
        return smap.array, mask
    if mask.shape == smap.array.shape[1:]:
        return smap.array[index], mask
    raise ValueError(f"{what} {mask.shape} fits neither a frame nor all frames of the map {smap.array.shape}")


def _stage(on_progress: Callable[[str, float], None] | None, stage: str) -> Callable[[float], None] | None:
    return None if on_progress is None else (lambda fraction: on_progress(stage, fraction))


def _check(cancel: CancelFlag | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled


def _cell(value: bool | float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return f"{value:.4f}"
