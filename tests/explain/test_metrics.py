"""Localization, faithfulness and similarity metrics against scikit-learn, scikit-image, SciPy and
OpenCV (CheXlocalize's own segmentation steps)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from skimage.filters import threshold_otsu
from skimage.metrics import structural_similarity
from sklearn.metrics import auc, precision_recall_curve

from tests.explain.peers import random_input, random_network
from viewer.explain.context import ExplainContext
from viewer.explain.faithfulness import causal_curves
from viewer.explain.localization import (
    auprc,
    dice,
    energy_inside,
    iou,
    localization,
    otsu_mask,
    otsu_threshold,
    pointing_game,
    to_uint8,
    top_fraction_mask,
)
from viewer.explain.similarity import ranks, spearman, ssim


def blob_map(shape=(64, 80), center=(20, 30), sigma=6.0, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    blob = np.exp(-((yy - center[0]) ** 2 + (xx - center[1]) ** 2) / (2 * sigma**2))
    return (blob + noise * rng.random(shape)).astype(np.float32)


def disk(shape=(64, 80), center=(20, 30), radius=8):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


@pytest.mark.parametrize("seed", range(6))
def test_auprc_equals_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    s = blob_map(seed=seed, noise=0.5)
    s[rng.random(s.shape) < 0.2] = 0.3  # ties
    mask = disk(radius=5 + seed)
    precision, recall, _ = precision_recall_curve(mask.ravel(), s.ravel())
    assert auprc(s, mask) == pytest.approx(auc(recall, precision), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_otsu_equals_scikit_image_and_opencv(seed):
    values = to_uint8(blob_map(seed=seed, noise=0.3 * seed + 0.05))
    t = otsu_threshold(values)
    assert t == threshold_otsu(values, nbins=256)
    cv_t, _ = cv2.threshold(values, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    assert t == int(cv_t)


def test_otsu_mask_equals_chexlocalize_pipeline():
    """cheXlocalize ``cam_to_segmentation``: 8-bit, Otsu, findContours(RETR_TREE), every contour filled."""
    s = blob_map(noise=0.02)
    ring = disk(radius=14) & ~disk(radius=7)  # a ring: its hole must be filled
    s = s * 0.2 + ring * 0.8 + disk(center=(50, 65), radius=5) * 0.9
    values = to_uint8(s)
    _, binary = cv2.threshold(values, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    contours, _ = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    expected = np.zeros_like(values)
    for contour in contours:
        cv2.fillPoly(expected, [contour], 255)
    got = otsu_mask(s)
    assert got[20, 30], "the ring's hole is filled"
    assert np.array_equal(got, expected > 0)


def test_pointing_game_tolerance_and_empty_mask():
    s = np.zeros((50, 50))
    s[10, 10] = 1
    mask = np.zeros((50, 50), bool)
    mask[10, 20:30] = True
    assert pointing_game(s, mask, tolerance=0) is False
    assert pointing_game(s, mask, tolerance=10) is True
    assert pointing_game(s, mask, tolerance=9.9) is False
    assert pointing_game(s, np.zeros_like(mask)) is None
    volume = np.zeros((3, 50, 50))
    volume[2, 10, 10] = 1
    vmask = np.zeros((3, 50, 50), bool)
    vmask[2, 12, 10] = True
    assert pointing_game(volume, vmask, tolerance=2) is True
    assert pointing_game(volume, vmask, tolerance=1) is False


def test_overlap_scores():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:5] = True
    b[2:7] = True
    assert iou(a, b) == pytest.approx(30 / 70)
    assert dice(a, b) == pytest.approx(60 / 100)
    s = np.ones((10, 10))
    assert energy_inside(s, a) == pytest.approx(0.5)
    assert energy_inside(-s, a) == 0.0  # no positive mass
    top = top_fraction_mask(np.arange(100.0).reshape(10, 10), 0.1)
    assert top.sum() == 10 and top[9].all()


def test_localization_of_a_perfect_and_a_wrong_map():
    mask = disk(radius=8)
    good = localization(blob_map(noise=0.0, sigma=5.0), mask)
    bad = localization(blob_map(center=(50, 65), noise=0.0, sigma=5.0), mask)
    assert good.pointing_game and not bad.pointing_game
    assert good.iou_otsu > 0.5 > bad.iou_otsu
    assert good.energy_inside > 0.5 > bad.energy_inside
    assert good.auprc > 0.9 > 0.1 > bad.auprc
    assert good.iou_top > 0.6
    empty = localization(blob_map(), np.zeros((64, 80), bool))
    assert empty.pointing_game is None and empty.iou_otsu is None
    with pytest.raises(ValueError, match="different grids"):
        localization(blob_map(), np.zeros((10, 10), bool))


@pytest.mark.parametrize("seed", range(4))
def test_rank_similarity_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.random((30, 40))
    a[a < 0.3] = 0  # ties
    b = a + rng.random((30, 40)) * seed
    assert spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel())[0], abs=1e-12)
    np.testing.assert_allclose(ranks(a), __import__("scipy").stats.rankdata(a.ravel()))


@pytest.mark.parametrize("seed", range(4))
def test_ssim_equals_scikit_image(seed):
    a = blob_map(seed=seed, noise=0.3)
    b = blob_map(center=(25 + seed, 33), seed=seed + 9, noise=0.3)
    a, b = a / a.max(), b / b.max()
    expected = structural_similarity(
        a.astype(np.float64),
        b.astype(np.float64),
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(a, b) == pytest.approx(expected, abs=1e-10)
    assert ssim(a, a) == pytest.approx(1.0)


def test_deletion_and_insertion_follow_rise_causal_metric():
    """A network that only sums a region of its input: ranking that region first must delete the
    score fastest and insert it fastest; curves have steps + 1 points and the RISE AUC."""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 1, 1, bias=False), torch.nn.Flatten(), torch.nn.Linear(32 * 32, 2)
    )
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[2].weight.zero_()
        region = torch.zeros(32, 32)
        region[4:12, 4:12] = 1
        net[2].weight[0] = region.flatten() * 0.01
    x = (region * 4)[None, None].repeat(1, 3, 1, 1)  # blurring spreads the region out
    good = region.numpy() + 0.01 * np.random.default_rng(0).random((32, 32))
    bad = 1 - region.numpy()
    with ExplainContext(net.eval(), "0", x, task="multiclass", input_grads=False) as ctx:
        d_good, i_good = causal_curves(ctx, good, 0, steps=16, substrate="zeros")
        d_bad, i_bad = causal_curves(ctx, bad, 0, steps=16, substrate="zeros")
    assert len(d_good.scores) == 17 and d_good.fractions[0] == 0 and d_good.fractions[-1] == 1
    assert d_good.auc < d_bad.auc
    assert i_good.auc > i_bad.auc
    s = d_good.scores
    assert d_good.auc == pytest.approx((s.sum() - s[0] / 2 - s[-1] / 2) / (len(s) - 1))


def test_causal_curves_reject_a_map_of_the_wrong_size():
    net = random_network("resnet18")
    with (
        ExplainContext(net, "layer4", random_input(size=64), task="multiclass") as ctx,
        pytest.raises(ValueError, match="100 values for a 64x64 input"),
    ):
        causal_curves(ctx, np.zeros((10, 10)), 0)
