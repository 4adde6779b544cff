"""The local Lipschitz estimate (issue 37): its formula, and Quantus' ``LocalLipschitzEstimate``
as the oracle on the same Gaussian perturbations."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.explain.stability import gaussian_noises, local_lipschitz, max_scaled
from viewer.explain.stability_runs import compared_frame, input_explainer, lipschitz_estimate, top_label
from viewer.inference.catalog import bundled_models
from viewer.inference.model import LoadedModel
from viewer.io import discover
from viewer.io.loader import load_series
from viewer.resources import resource_path


def test_max_scaled_divides_by_the_largest_magnitude_and_leaves_zeros():
    values = np.array([[1.0, -4.0], [2.0, 0.5]])
    np.testing.assert_allclose(max_scaled(values), values / 4.0)
    np.testing.assert_array_equal(max_scaled(np.zeros((2, 2))), np.zeros((2, 2)))


def test_local_lipschitz_is_the_largest_ratio_of_map_change_to_input_change():
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(16, 12))
    x = rng.normal(size=(16, 12))
    noises = list(gaussian_noises(x.shape, 0.1, 5, np.random.default_rng(4)))

    def explain(v):
        return weights * v**2  # not linear: the ratio depends on where the input moved

    expected = []
    for u in noises:
        a, b = max_scaled(explain(x)), max_scaled(explain(x + u))
        expected.append(np.linalg.norm(a - b) / (np.linalg.norm(u) + 1e-10))
    result = local_lipschitz(explain, x, noises)
    assert result.ratios == pytest.approx(expected, rel=1e-9)
    assert result.estimate == pytest.approx(max(expected), rel=1e-9)
    raw = local_lipschitz(explain, x, noises[:1], normalise=False)
    assert raw.estimate == pytest.approx(
        np.linalg.norm(explain(x) - explain(x + noises[0])) / np.linalg.norm(noises[0]), rel=1e-9
    )
    with pytest.raises(ValueError, match="at least one"):
        local_lipschitz(explain, x, [])


@pytest.fixture(scope="module")
def chest():
    model = LoadedModel.from_manifest(bundled_models()["cxr_resnet18"])
    image = load_series(discover([resource_path("samples", "dicom", "cxr_0001.dcm")]).series[0])
    frame = compared_frame(image)
    return model, image, frame, top_label(model, image, frame)


def test_quantus_local_lipschitz_estimate_agrees_on_shared_perturbations(chest):
    """Quantus 0.6's LocalLipschitzEstimate with its defaults (Gaussian noise, maps normalised by
    their maximum, Euclidean distances, the maximum over samples) given our Grad-CAM as its
    explain_func and the same noise draws: np.random's global stream, which its
    batch_gaussian_noise reads with one (1, C*H*W) draw per sample, seeded alike for both."""
    quantus = pytest.importorskip("quantus")
    torch = pytest.importorskip("torch")
    model, image, frame, target = chest
    x, explain_input = input_explainer(model, image, "gradcam", target, frame)
    std, samples, seed = 0.05, 3, 17

    def explain_func(model, inputs, targets, **kwargs):
        return np.stack([explain_input(v)[None] for v in np.asarray(inputs)])

    draws = np.random.RandomState(seed)
    noises = [draws.normal(0.0, std, size=(1, x.size)).reshape(x.shape) for _ in range(samples)]
    ours = local_lipschitz(explain_input, x, noises)
    np.random.seed(seed)
    peer = quantus.LocalLipschitzEstimate(nr_samples=samples, perturb_std=std, disable_warnings=True)(
        model=model.network, x_batch=x[None].astype(np.float32),
        y_batch=np.array([model.manifest.labels.index(target)]), a_batch=None,
        explain_func=explain_func, device=torch.device("cpu"),
    )[0]  # fmt: skip
    assert ours.estimate > 0
    assert ours.estimate == pytest.approx(peer, rel=1e-3)


def test_lipschitz_estimate_on_the_model_reports_its_noise_and_likeness(chest):
    model, image, frame, target = chest
    row = lipschitz_estimate(model, image, "gradcam", target, frame, std=0.05, samples=2, seed=5)
    assert row.perturbation == "gaussian noise sd=0.05" and row.samples == 2
    x, explain_input = input_explainer(model, image, "gradcam", target, frame, 5)
    noises = gaussian_noises(x.shape, 0.05, 2, np.random.default_rng(5))
    assert row.lipschitz == pytest.approx(local_lipschitz(explain_input, x, noises).estimate, rel=1e-6)
    assert 0 < row.ssim <= 1 and -1 <= row.spearman <= 1
