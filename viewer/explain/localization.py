"""How well a map agrees with an annotation mask (the radiologist's, or a phantom's ground truth).

Maps and masks share a grid (any dimension: a radiograph, or slices x rows x cols for a series).
Conventions follow the published protocols (see docs/metrics.md and docs/explanations.md):

- pointing game: the map's maximum lies inside the mask, or within ``tolerance`` pixels of it
  (Zhang et al. 2016 use 15 px; 0 gives CheXlocalize's argmax hit rate);
- IoU and Dice of the map segmented by Otsu's threshold, CheXlocalize's pipeline (min-max, 8-bit,
  Otsu, holes filled), and of the map's top-k % of pixels;
- energy inside the mask: the share of the map's (positive) mass inside it (Wang et al. 2020);
- AUPRC: the map as a pixel classifier of the mask, trapezoidal area under the precision-recall
  curve (Arun et al. 2021; scikit-learn's ``auc(recall, precision)``).

Every score is ``None`` (NaN in tables) when the mask is empty: there is nothing to point at.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from viewer.explain.similarity import unit_scaled


def pointing_game(saliency: np.ndarray, mask: np.ndarray, tolerance: float = 15.0) -> bool | None:
    """Whether the map's maximum (first one, in C order, on ties) is within ``tolerance`` pixels of
    the mask."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return None
    peak = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    if mask[peak]:
        return True
    if tolerance <= 0:
        return False
    inside = np.argwhere(mask)
    return bool(np.min(np.sum((inside - np.asarray(peak)) ** 2, axis=1)) <= tolerance**2)


def to_uint8(saliency: np.ndarray) -> np.ndarray:
    """Min-max to 0..255 and truncate, as CheXlocalize does before Otsu."""
    return (unit_scaled(saliency) * 255).astype(np.uint8)


def otsu_threshold(values: np.ndarray) -> int:
    """Otsu's threshold of 8-bit values, as OpenCV's THRESH_OTSU: foreground is ``> t``."""
    hist = np.bincount(np.asarray(values, np.uint8).ravel(), minlength=256).astype(np.float64)
    p = hist / hist.sum()
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * omega - mu) ** 2 / (omega * (1 - omega))
    between[~np.isfinite(between)] = -1
    return int(np.argmax(between))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill enclosed holes in a 2-D mask, or slice by slice in a stack."""
    mask = np.asarray(mask, bool)
    if mask.ndim > 2:
        return np.stack([fill_holes(m) for m in mask])
    import SimpleITK as sitk  # here: 0.1-0.3 s of start-up only for runs with an annotation

    filled = sitk.BinaryFillhole(sitk.GetImageFromArray(mask.astype(np.uint8)), fullyConnected=False)
    return sitk.GetArrayFromImage(filled).astype(bool)


def otsu_mask(saliency: np.ndarray) -> np.ndarray:
    """CheXlocalize's ``cam_to_segmentation``: 8-bit map, Otsu, every contour filled."""
    values = to_uint8(saliency)
    if values.max() == values.min():
        return np.zeros(values.shape, bool)
    return fill_holes(values > otsu_threshold(values))


def top_fraction_mask(saliency: np.ndarray, fraction: float) -> np.ndarray:
    """The ``fraction`` of pixels with the highest values (ties broken by position)."""
    flat = np.asarray(saliency).ravel()
    k = max(1, round(fraction * flat.size))
    keep = np.zeros(flat.size, bool)
    keep[np.argsort(-flat, kind="stable")[:k]] = True
    return keep.reshape(np.shape(saliency))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return float(2 * np.logical_and(a, b).sum() / total) if total else 0.0


def energy_inside(saliency: np.ndarray, mask: np.ndarray) -> float | None:
    """Share of the map's positive mass inside the mask (energy-based pointing game)."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return None
    s = np.clip(np.asarray(saliency, np.float64), 0, None)
    total = s.sum()
    return float(s[mask].sum() / total) if total > 0 else 0.0


def auprc(saliency: np.ndarray, mask: np.ndarray) -> float | None:
    """Area under the precision-recall curve of the map scoring each pixel (trapezoidal)."""
    mask = np.asarray(mask, bool).ravel()
    if not mask.any():
        return None
    scores = np.asarray(saliency, np.float64).ravel()
    order = np.argsort(-scores, kind="mergesort")
    scores, truth = scores[order], mask[order]
    # One point per distinct threshold, as scikit-learn's precision_recall_curve.
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tp = np.cumsum(truth)[last]
    fp = (last + 1) - tp
    # Stop at the first threshold that reaches full recall, as scikit-learn does.
    full = int(np.searchsorted(tp, tp[-1]))
    tp, fp = tp[: full + 1], fp[: full + 1]
    precision = tp / (tp + fp)
    recall = tp / mask.sum()
    # Reversed, with the (recall 0, precision 1) end point, then trapezoids: sklearn's auc().
    precision = np.r_[precision[::-1], 1.0]
    recall = np.r_[recall[::-1], 0.0]
    return float(-np.trapezoid(precision, recall))


@dataclass
class LocalizationScores:
    pointing_game: bool | None
    pointing_game_strict: bool | None
    iou_otsu: float | None
    dice_otsu: float | None
    iou_top: float | None
    energy_inside: float | None
    auprc: float | None
    top_fraction: float
    tolerance: float

    def as_dict(self) -> dict:
        return asdict(self)


def localization(
    saliency: np.ndarray, mask: np.ndarray, *, tolerance: float = 15.0, top_fraction: float | None = None
) -> LocalizationScores:
    """All localization scores of one map against one mask. The top-k share defaults to the mask's
    own share of the image, so a perfect map can reach IoU 1."""
    mask = np.asarray(mask, bool)
    if saliency.shape != mask.shape:
        raise ValueError(f"map {saliency.shape} and mask {mask.shape} are on different grids")
    fraction = top_fraction if top_fraction is not None else max(mask.mean(), 1.0 / mask.size)
    if not mask.any():
        return LocalizationScores(None, None, None, None, None, None, None, fraction, tolerance)
    segmented = otsu_mask(saliency)
    return LocalizationScores(
        pointing_game=pointing_game(saliency, mask, tolerance),
        pointing_game_strict=pointing_game(saliency, mask, 0),
        iou_otsu=iou(segmented, mask),
        dice_otsu=dice(segmented, mask),
        iou_top=iou(top_fraction_mask(saliency, fraction), mask),
        energy_inside=energy_inside(saliency, mask),
        auprc=auprc(saliency, mask),
        top_fraction=fraction,
        tolerance=tolerance,
    )
