"""Stability of maps (issue 37): the protocol's numbers against scikit-image, scipy and Quantus."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from skimage.metrics import structural_similarity as skimage_ssim

from viewer.explain.registry import METHODS
from viewer.explain.stability import (
    agreement,
    compare,
    overlap,
    pair_scores,
    protocol_map,
    sensitivity,
    shifted,
)
from viewer.explain.stability_runs import (
    across_seeds,
    compared_frame,
    input_explainer,
    one_map,
    seeded_methods,
    top_label,
)
from viewer.inference.catalog import bundled_models
from viewer.inference.model import LoadedModel
from viewer.io import discover
from viewer.io.loader import load_series
from viewer.resources import resource_path


def smooth_map(seed: int, shape=(64, 80), channels: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    size = (channels, *shape) if channels else shape
    low = rng.normal(size=tuple(s // 8 if i >= len(size) - 2 else s for i, s in enumerate(size)))
    up = np.kron(low, np.ones((8, 8)))
    return up + 0.2 * rng.normal(size=up.shape)


def test_protocol_map_sums_magnitudes_over_channels_and_scales_to_unit():
    values = smooth_map(0, channels=3)
    expected = np.abs(values).sum(axis=0)
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(protocol_map(values, channel_axis=0), expected, atol=1e-12)


@pytest.mark.parametrize("seeds", [(0, 1), (2, 2), (3, 4)])
def test_ssim_and_spearman_equal_scikit_image_and_scipy(seeds):
    a, b = smooth_map(seeds[0]), smooth_map(seeds[1]) + (0.5 * smooth_map(9) if seeds[0] == seeds[1] else 0)
    ssim, rho = compare(a, b)
    pa, pb = protocol_map(a), protocol_map(b)
    assert ssim == pytest.approx(skimage_ssim(pa, pb, data_range=1.0), abs=1e-3)
    assert rho == pytest.approx(scipy.stats.spearmanr(pa.ravel(), pb.ravel()).statistic, abs=1e-3)


def test_pair_scores_cover_every_pair_once_and_agreement_is_mean_and_deviation():
    maps = {f"m{i}": smooth_map(i) for i in range(3)}
    pairs = pair_scores(maps)
    assert [(p.a, p.b) for p in pairs] == [("m0", "m1"), ("m0", "m2"), ("m1", "m2")]
    mean, deviation = agreement(maps.values())
    stack = np.stack([protocol_map(m) for m in maps.values()])
    np.testing.assert_allclose(mean, stack.mean(0), atol=1e-6)
    np.testing.assert_allclose(deviation, stack.std(0), atol=1e-6)


def test_a_shift_and_back_restores_the_map_inside_the_overlap():
    values = smooth_map(5)
    back = shifted(shifted(values, 3, -2), -3, 2)
    np.testing.assert_array_equal(overlap(back, 3, -2), overlap(values, 3, -2))


def test_sensitivity_is_quantus_ratio_on_a_linear_explainer():
    weights = smooth_map(7)
    x = smooth_map(8)
    noises = [np.full(x.shape, 0.1), np.full(x.shape, -0.3)]
    result = sensitivity(lambda v: weights * v, x, noises)
    ratios = [np.linalg.norm(weights * u) / np.linalg.norm(weights * x) for u in noises]
    assert result.ratios == pytest.approx(ratios)
    assert result.max == pytest.approx(max(ratios)) and result.mean == pytest.approx(np.mean(ratios))


# --- on the bundled chest model ---------------------------------------------------------------


@pytest.fixture(scope="module")
def chest():
    model = LoadedModel.from_manifest(bundled_models()["cxr_resnet18"])
    image = load_series(discover([resource_path("samples", "dicom", "cxr_0001.dcm")]).series[0])
    frame = compared_frame(image)
    return model, image, frame, top_label(model, image, frame)


def test_quantus_max_and_avg_sensitivity_agree_on_shared_perturbations(chest):
    """Quantus 0.6's MaxSensitivity/AvgSensitivity (uniform noise of lower_bound r, Frobenius
    norms, raw maps) given our Grad-CAM as its explain_func and the same noise draws: np.random's
    global stream, which Quantus' uniform_noise reads, seeded alike for both."""
    quantus = pytest.importorskip("quantus")
    torch = pytest.importorskip("torch")
    model, image, frame, target = chest
    x, explain_input = input_explainer(model, image, "gradcam", target, frame)
    radius, samples, seed = 0.05, 4, 11

    def explain_func(model, inputs, targets, **kwargs):
        return np.stack([explain_input(v)[None] for v in np.asarray(inputs)])

    def ours():
        draws = np.random.RandomState(seed)
        noises = (draws.uniform(-radius, radius, size=(1, x.size)).reshape(x.shape) for _ in range(samples))
        return sensitivity(explain_input, x, noises)

    y = np.array([model.manifest.labels.index(target)])
    peer = {}
    for name, metric in (("max", quantus.MaxSensitivity), ("avg", quantus.AvgSensitivity)):
        np.random.seed(seed)
        peer[name] = metric(nr_samples=samples, lower_bound=radius, disable_warnings=True)(
            model=model.network, x_batch=x[None].astype(np.float32), y_batch=y, a_batch=None,
            explain_func=explain_func, device=torch.device("cpu"),
        )[0]  # fmt: skip
    result = ours()
    assert result.max > 0
    assert result.max == pytest.approx(peer["max"], rel=1e-3)
    assert result.mean == pytest.approx(peer["avg"], rel=1e-3)


def test_seeded_methods_are_the_ones_whose_maps_change_with_the_seed(chest):
    model, image, frame, target = chest
    assert set(seeded_methods()) == {"smoothgrad", "gradient-shap", "rise", "lime", "drise"}
    assert not METHODS["gradcam"].seeded
    same = [one_map(model, image, "gradcam", target, frame, seed=s).frame(frame) for s in (0, 1)]
    np.testing.assert_array_equal(*same)
    timed = across_seeds(model, image, "smoothgrad", target, frame, [3, 4])
    assert timed.seeds == {"seed 3": 3, "seed 4": 4}
    a, b = timed.maps.values()
    assert not np.array_equal(a, b)
    again = one_map(model, image, "smoothgrad", target, frame, seed=3).frame(frame)
    np.testing.assert_array_equal(again, timed.maps["seed 3"])
