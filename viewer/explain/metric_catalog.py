"""Every score the viewer gives a map, by one canonical id: its title, what it measures, which way
is better, where it comes from, and the column it has in each file the program writes.

The id is the one name of a score in code (``MapScores``, ``LocalizationScores``); the title is
its one name on screen and in the docs. Files keep the column names they were first written with
(``metrics.csv``'s ``energy_in_mask``, ``evaluate``'s ``energy``), so scripts that read them go on
working: those names are listed here, per file, and nowhere else. The docs' metrics table is made
from this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["METRICS", "Metric", "column_of", "metric", "title_of_metric"]

Better = Literal["higher", "lower", ""]
# The files whose columns are named here: the per-image scores of `explain` and the Compare panel's
# CSV, and the per-image rows of `evaluate` (its summary names its own aggregates).
FILES = ("metrics.csv", "evaluate")


@dataclass(frozen=True)
class Metric:
    """One score of a map. ``columns``: file (one of ``FILES``) -> its column name there, where
    the file has it under another name than ``id``."""

    id: str
    title: str
    definition: str
    better: Better
    reference: str
    needs: str = "annotation"  # what it is computed from: "annotation", "model", "maps", "time"
    columns: dict[str, str] = field(default_factory=dict)


METRICS: dict[str, Metric] = {
    m.id: m
    for m in (
        Metric(
            "pointing_game",
            "Pointing game",
            "Whether the map's maximum falls inside the annotation, within 15 px of it.",
            "higher",
            "Zhang et al., ECCV 2016",
        ),
        Metric(
            "pointing_game_strict",
            "Hit",
            "Whether the map's maximum falls inside the annotation itself (no tolerance).",
            "higher",
            "CheXlocalize (Saporta et al., Nat. Mach. Intell. 2022)",
            columns={"evaluate": "hit"},
        ),
        Metric(
            "pointing_game_marker",
            "Points at the marker",
            "Whether the map's maximum falls on a burned-in marker (an L/R letter) instead.",
            "lower",
            "this viewer's check for shortcut learning",
        ),
        Metric(
            "iou_otsu",
            "IoU (Otsu)",
            "Overlap (intersection over union) of the Otsu-thresholded map with the annotation.",
            "higher",
            "CheXlocalize (Saporta et al., Nat. Mach. Intell. 2022)",
            columns={"evaluate": "iou"},
        ),
        Metric(
            "dice_otsu",
            "Dice (Otsu)",
            "Dice coefficient of the Otsu-thresholded map with the annotation.",
            "higher",
            "CheXlocalize (Saporta et al., Nat. Mach. Intell. 2022)",
            columns={"evaluate": "dice"},
        ),
        Metric(
            "iou_top",
            "IoU (top share)",
            "IoU of the map's strongest pixels, as many as the annotation covers, with the annotation.",
            "higher",
            "top-k localization as in Arun et al., Radiology: AI 2021",
        ),
        Metric(
            "energy_inside",
            "Energy in annotation",
            "Share of the map's total (positive) saliency that lies inside the annotation.",
            "higher",
            "energy-based pointing game, Wang et al. (Score-CAM), CVPRW 2020",
            columns={"metrics.csv": "energy_in_mask", "evaluate": "energy"},
        ),
        Metric(
            "auprc",
            "AUPRC",
            "Area under the precision-recall curve of the map's values as a pixel classifier of the "
            "annotation.",
            "higher",
            "Arun et al., Radiology: AI 2021",
        ),
        Metric(
            "deletion_auc",
            "Deletion AUC",
            "The target's probability while the most salient pixels are blurred first: lower is more "
            "faithful.",
            "lower",
            "Petsiuk et al. (RISE), BMVC 2018",
            needs="model",
        ),
        Metric(
            "insertion_auc",
            "Insertion AUC",
            "The target's probability while the most salient pixels are restored first into a "
            "blurred image: higher is more faithful.",
            "higher",
            "Petsiuk et al. (RISE), BMVC 2018",
            needs="model",
        ),
        Metric(
            "substrate_drop",
            "Blur effect",
            "The target's probability on the image minus on the fully blurred image: near 0, the "
            "deletion and insertion AUCs cannot rank maps.",
            "",
            "this viewer's guard on deletion/insertion",
            needs="model",
        ),
        Metric(
            "agreement",
            "Agreement (mean rho)",
            "Mean Spearman rank correlation of the map with the other maps of the same image.",
            "",
            "Arun et al., Radiology: AI 2021 (map-to-map rank correlation)",
            needs="maps",
        ),
        Metric(
            "stability_ssim",
            "Stability (SSIM)",
            "Mean SSIM between the method's maps of the same image across seeds (random methods) or "
            "the model's checkpoints: |value| summed over channels, min-max scaled, scikit-image's "
            "default window.",
            "higher",
            "Arun et al., Radiology: AI 2021 (repeatability and reproducibility)",
            needs="model",
        ),
        Metric(
            "sanity_spearman",
            "Sanity rank correlation",
            "Spearman correlation of the map with the map of the fully randomised network.",
            "lower",
            "Adebayo et al., NeurIPS 2018 (cascading randomisation)",
            needs="model",
        ),
        Metric(
            "sanity_verdict",
            "Sanity",
            "Cascading model randomisation: a map that stays the same as the weights are randomised fails.",
            "",
            "Adebayo et al., NeurIPS 2018",
            needs="model",
        ),
        Metric(
            "seconds",
            "Seconds",
            "The map's compute time.",
            "lower",
            "",
            needs="time",
        ),
    )
}


def metric(metric_id: str) -> Metric:
    """The catalogue entry of ``metric_id``; a ``KeyError`` names the known ids."""
    try:
        return METRICS[metric_id]
    except KeyError:
        raise KeyError(f"unknown metric {metric_id!r}; known: {', '.join(METRICS)}") from None


def title_of_metric(metric_id: str) -> str:
    """The score's one name on screen and in the docs."""
    return metric(metric_id).title


def column_of(metric_id: str, file: str) -> str:
    """The score's column in ``file`` (one of ``FILES``): its id unless the file names it otherwise."""
    if file not in FILES:
        raise ValueError(f"unknown file {file!r}; known: {', '.join(FILES)}")
    return metric(metric_id).columns.get(file, metric_id)
