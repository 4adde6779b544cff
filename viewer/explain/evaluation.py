"""Evaluating saliency methods on a data set, as CheXlocalize does: per image x label x method
localization scores against the radiologists' masks, per label x method means with percentile
bootstrap confidence intervals, and, where several radiologists annotated the same images, their
own agreement as the human benchmark.

Definitions (stated in the report too):

- An image counts toward a label only when the label is annotated on it. An image where the model
  predicts the label (probability >= 0.5; a detector: a box at its score threshold) but nobody
  annotated it is a false-positive localization.
- A detector's map explains one box: it is scored against the radiologist box that box matched
  (its rectangle); a box that matched none is a false-positive localization. The boxes themselves
  are scored in ``detection_summary.csv`` (see below).
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
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from viewer.explain.localization import iou, localization
from viewer.io.image import Image
from viewer.io.label_vocabulary import LabelMatcher
from viewer.io.regions import Annotation

PER_IMAGE = (
    "image", "label", "method", "probability", "iou", "dice", "hit", "energy", "auprc",
    "annotation_label", "false_positive", "iou_by_threshold", "agreement", "frame", "box",
)  # fmt: skip
# A detector's boxes: their rows ("model_box", "radiologist_box") fill ``frame`` and ``box`` (as do
# its maps' rows) and are summarised on their own (viewer.explain.detection_scores).
BOX_ROWS = ("model_box", "radiologist_box")
# Thresholds of the min-max scaled map tried when tuning a label's threshold on a validation split.
THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))
SUMMARY = (
    "label", "method", "n", "miou", "miou_low", "miou_high", "hit_rate", "hit_low", "hit_high",
    "auprc", "false_positive_localizations", "threshold", "n_tuned", "miou_tuned", "miou_tuned_low",
    "miou_tuned_high", "mdice", "agreement",
)  # fmt: skip
RADIOLOGISTS = "radiologists"
# A segmenter's own masks scored as a "method": Dice and IoU against the annotation, no map.
MODEL_MASK = "model_mask"


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
    # Resamples drawn in blocks of about 1 M indices, so 10^5 images cost megabytes, not gigabytes;
    # the generator's stream is the same as one draw of all of them.
    block = max(1, _BLOCK // data.size)
    means = np.concatenate(
        [
            data[rng.integers(0, data.size, size=(min(block, n - k), data.size))].mean(axis=1)
            for k in range(0, n, block)
        ]
    )
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return mean, float(low), float(high)


_BLOCK = 1 << 20


class _Group:
    """One label x method's scores, kept as flat arrays (not rows): 10^5 images x a dozen methods
    fit in tens of megabytes."""

    def __init__(self, curves: bool):
        self.iou, self.hit, self.auprc, self.dice = array("d"), array("d"), array("d"), array("d")
        self.agreement = array("d")  # each map's mean rank correlation with the image's other maps
        self.order = array("q")  # the image's place, so values resample in image order
        self.validation = array("b")
        self.curves = array("f") if curves else None
        self.false_positives = 0

    def add(self, row: dict, place: int, validation: set[str] | None) -> None:
        if row.get("false_positive"):
            self.false_positives += 1
        if row.get("iou") is None:
            return
        self.iou.append(row["iou"])
        self.hit.append(_nan(row.get("hit")))
        self.auprc.append(_nan(row.get("auprc")))
        self.dice.append(_nan(row.get("dice")))
        self.agreement.append(_nan(row.get("agreement")))
        self.order.append(place)
        if self.curves is not None:
            curve = row.get("iou_by_threshold")
            self.validation.append(2 if not curve else int(row["image"] in validation))
            self.curves.extend(curve or [0.0] * len(THRESHOLDS))

    def summary(self, n: int, seed: int, tune: bool) -> dict:
        by_place = np.argsort(np.frombuffer(self.order, np.int64), kind="stable")
        iou, hit = np.asarray(self.iou)[by_place], np.asarray(self.hit)[by_place]
        hit = hit[~np.isnan(hit)]
        auprc = np.asarray(self.auprc)
        auprc = auprc[~np.isnan(auprc)]
        miou, hits = bootstrap_mean(iou, n=n, seed=seed), bootstrap_mean(hit, n=n, seed=seed)
        row = {"n": len(iou), "miou": miou[0], "miou_low": miou[1], "miou_high": miou[2]}
        row |= {"hit_rate": hits[0], "hit_low": hits[1], "hit_high": hits[2]}
        row["auprc"] = float(auprc.mean()) if auprc.size else float("nan")
        dice = np.asarray(self.dice)
        dice = dice[~np.isnan(dice)]
        row["mdice"] = float(dice.mean()) if dice.size else float("nan")
        agreement = np.asarray(self.agreement)
        agreement = agreement[~np.isnan(agreement)]
        row["agreement"] = float(agreement.mean()) if agreement.size else float("nan")
        row["false_positive_localizations"] = self.false_positives
        return row | (self._tuned(by_place, n, seed) if tune and self.curves is not None else {})

    def _tuned(self, by_place: np.ndarray, n: int, seed: int) -> dict:
        curves = np.asarray(self.curves, np.float64).reshape(-1, len(THRESHOLDS))[by_place]
        split = np.asarray(self.validation)[by_place]
        tune, test = curves[split == 1], curves[split == 0]
        if not len(tune) or not len(test):
            return {"threshold": None, "n_tuned": len(test)}
        best = int(np.argmax(tune.mean(axis=0)))
        mean, low, high = bootstrap_mean(test[:, best], n=n, seed=seed)
        tuned = {"miou_tuned": mean, "miou_tuned_low": low, "miou_tuned_high": high}
        return {"threshold": THRESHOLDS[best], "n_tuned": len(test)} | tuned


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def summarise(
    rows: Iterable[dict],
    *,
    n: int = 1000,
    seed: int = 0,
    validation: set[str] | None = None,
    order: dict[str, int] | None = None,
) -> list[dict]:
    """Per label x method: n, mIoU and hit rate with their intervals, mean AUPRC, and the count of
    false-positive localizations (rows with ``iou`` None and ``false_positive`` set). With a set
    of ``validation`` images, also the threshold of best mean IoU on them, and the mIoU at that
    threshold (with its interval) on the other images. ``rows`` are read once (a file's rows can
    stream through); intervals resample images in ``order`` (default: as they come)."""
    groups: dict[tuple[str, str], _Group] = {}
    places = dict(order or {})
    for row in rows:
        if row["method"] in BOX_ROWS:
            continue
        key = (row["label"], row["method"])
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(
                curves=validation is not None and key[1] not in (RADIOLOGISTS, MODEL_MASK)
            )
        place = places.setdefault(row["image"], len(places))
        group.add(row, place, validation)
    out = []
    for (label, method), group in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] in (RADIOLOGISTS, MODEL_MASK), kv[0][1])
    ):
        tune = validation is not None and method not in (RADIOLOGISTS, MODEL_MASK)
        out.append({"label": label, "method": method} | group.summary(n, seed, tune))
    return out


__all__ = [
    "MODEL_MASK",
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
