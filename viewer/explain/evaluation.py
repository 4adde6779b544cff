"""Evaluating saliency methods on a data set, as CheXlocalize does: per image x label x method
localization scores against the radiologists' masks, per label x method means with percentile
bootstrap confidence intervals, and, where several radiologists annotated the same images, their
own agreement as the human benchmark.

Definitions (stated in the report too):

- An image counts toward a label only when the label is annotated on it. An image where the model
  predicts the label (probability >= 0.5) but nobody annotated it is a false-positive localization.
- ``iou`` / ``dice``: the map's Otsu segmentation (CheXlocalize's ``cam_to_segmentation``) against
  the union of the readers' masks; ``hit``: the map's maximum lies inside that mask; ``energy``:
  the map's share inside it; ``auprc``: of the map's values as a detector of mask pixels.
- Radiologists: per image, the mean IoU over all pairs of readers (``miou``), and the share of
  ordered pairs (a, b) where the centroid of a's mask falls inside b's (``hit_rate``). Readers are
  the regions' own (VinDr-CXR ``rad_id``, a SEG's creator) or, without one, the annotation file;
  identical masks count once (one truth saved in two formats).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from viewer.explain.localization import iou, localization
from viewer.io.image import Image
from viewer.io.label_vocabulary import LabelMatcher
from viewer.io.regions import Annotation

PER_IMAGE = (
    "image", "label", "method", "probability", "iou", "dice", "hit", "energy", "auprc",
    "annotation_label", "false_positive", "iou_by_threshold",
)  # fmt: skip
# Thresholds of the min-max scaled map tried when tuning a label's threshold on a validation split.
THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))
SUMMARY = (
    "label", "method", "n", "miou", "miou_low", "miou_high", "hit_rate", "hit_low", "hit_high",
    "auprc", "false_positive_localizations", "threshold", "n_tuned", "miou_tuned", "miou_tuned_low",
    "miou_tuned_high",
)  # fmt: skip
RADIOLOGISTS = "radiologists"


@dataclass
class Truth:
    """The annotated masks of one label on one image: the union, and each reader's."""

    label: str
    union: np.ndarray
    readers: dict[str, np.ndarray] = field(default_factory=dict)
    annotation_labels: tuple[str, ...] = ()


def truths(image: Image, annotations: Iterable[Annotation], matcher: LabelMatcher) -> dict[str, Truth]:
    """Every model label annotated on ``image``, with its readers' masks."""
    out: dict[str, Truth] = {}
    for annotation in annotations:
        for label in matcher.labels:
            names = matcher.matched(annotation.labels_on(image), label)
            if not names:
                continue
            mask = annotation.mask(image, label, matcher)
            if not mask.any():
                continue
            truth = out.setdefault(label, Truth(label, np.zeros_like(mask)))
            truth.union |= mask
            truth.annotation_labels = tuple(dict.fromkeys((*truth.annotation_labels, *names)))
            for reader in annotation.readers(image, label, matcher):
                key = reader or annotation.source
                reader_mask = annotation.mask(image, label, matcher, reader=reader)
                truth.readers[key] = truth.readers.get(key, np.zeros_like(mask)) | reader_mask
    return out


def map_scores(saliency: np.ndarray, truth: Truth) -> dict:
    scores = localization(saliency, truth.union)
    return {
        "iou": scores.iou_otsu,
        "dice": scores.dice_otsu,
        "hit": None if scores.pointing_game_strict is None else float(scores.pointing_game_strict),
        "energy": scores.energy_inside,
        "auprc": scores.auprc,
        "iou_by_threshold": ious_by_threshold(saliency, truth.union),
    }


def ious_by_threshold(saliency: np.ndarray, mask: np.ndarray) -> list[float]:
    """IoU of the min-max scaled map thresholded at each of ``THRESHOLDS`` with ``mask``."""
    low, high = float(saliency.min()), float(saliency.max())
    scaled = (saliency - low) / (high - low) if high > low else np.zeros_like(saliency)
    return [iou(scaled >= t, mask) for t in THRESHOLDS]


def validation_images(images: Iterable[str], fraction: float, seed: int = 0) -> set[str]:
    """A seeded split: about ``fraction`` of ``images`` (by name, so a resumed run splits alike)."""
    ordered = sorted(set(images))
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(ordered))[: round(fraction * len(ordered))]
    return {ordered[i] for i in chosen}


def reader_agreement(truth: Truth) -> dict[str, float] | None:
    """Mean pairwise IoU and centroid hit rate of the readers of one label on one image (None with
    fewer than two readers)."""
    masks: list[np.ndarray] = []
    for mask in truth.readers.values():  # one truth exported twice (JSON and SEG) is one reader
        if mask.any() and not any(np.array_equal(mask, seen) for seen in masks):
            masks.append(mask)
    if len(masks) < 2:
        return None
    ious = [iou(a, b) for a, b in itertools.combinations(masks, 2)]
    hits = [_centroid_inside(a, b) for a, b in itertools.permutations(masks, 2)]
    return {"iou": float(np.mean(ious)), "hit": float(np.mean(hits))}


def _centroid_inside(a: np.ndarray, b: np.ndarray) -> bool:
    centre = tuple(round(float(c.mean())) for c in np.nonzero(a))
    return bool(b[centre])


def bootstrap_mean(values: Sequence[float], *, n: int = 1000, seed: int = 0, level: float = 0.95):
    """The mean of ``values`` and its percentile bootstrap interval ``(mean, low, high)`` over
    ``n`` resamples (NaN bounds for fewer than two values)."""
    data = np.asarray([v for v in values if v is not None], np.float64)
    if data.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(data.mean())
    if data.size < 2 or n <= 0:
        return mean, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n, data.size))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return mean, float(low), float(high)


def summarise(
    rows: list[dict], *, n: int = 1000, seed: int = 0, validation: set[str] | None = None
) -> list[dict]:
    """Per label x method: n, mIoU and hit rate with their intervals, mean AUPRC, and the count of
    false-positive localizations (rows with ``iou`` None and ``false_positive`` set). With a set
    of ``validation`` images, also the threshold of best mean IoU on them, and the mIoU at that
    threshold (with its interval) on the other images."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["label"], row["method"]), []).append(row)
    out = []
    for (label, method), group in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] == RADIOLOGISTS, kv[0][1])
    ):
        scored = [r for r in group if r.get("iou") is not None]
        miou = bootstrap_mean([r["iou"] for r in scored], n=n, seed=seed)
        hit = bootstrap_mean([r["hit"] for r in scored], n=n, seed=seed)
        auprc = [r["auprc"] for r in scored if r.get("auprc") is not None]
        row = {"label": label, "method": method, "n": len(scored)}
        row |= {"miou": miou[0], "miou_low": miou[1], "miou_high": miou[2]}
        row |= {"hit_rate": hit[0], "hit_low": hit[1], "hit_high": hit[2]}
        row["auprc"] = float(np.mean(auprc)) if auprc else float("nan")
        row["false_positive_localizations"] = sum(1 for r in group if r.get("false_positive"))
        row |= (
            _tuned(scored, validation, n, seed) if validation is not None and method != RADIOLOGISTS else {}
        )
        out.append(row)
    return out


def _tuned(scored: list[dict], validation: set[str], n: int, seed: int) -> dict:
    curves = [r for r in scored if r.get("iou_by_threshold")]
    tune = [r["iou_by_threshold"] for r in curves if r["image"] in validation]
    test = [r["iou_by_threshold"] for r in curves if r["image"] not in validation]
    if not tune or not test:
        return {"threshold": None, "n_tuned": len(test)}
    best = int(np.argmax(np.mean(tune, axis=0)))
    mean, low, high = bootstrap_mean([curve[best] for curve in test], n=n, seed=seed)
    tuned = {"miou_tuned": mean, "miou_tuned_low": low, "miou_tuned_high": high}
    return {"threshold": THRESHOLDS[best], "n_tuned": len(test)} | tuned


__all__ = [
    "PER_IMAGE",
    "RADIOLOGISTS",
    "SUMMARY",
    "THRESHOLDS",
    "Truth",
    "bootstrap_mean",
    "ious_by_threshold",
    "map_scores",
    "reader_agreement",
    "summarise",
    "truths",
    "validation_images",
]
