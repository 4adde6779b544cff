"""Model > Stability of the maps, without Qt: the session compares the maps of the slice on screen
across seeds (random methods) and across the model's checkpoints, and shows the agreement and
disagreement layers; the numbers are checked against scikit-image and scipy on maps the engine
computes independently."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from tests.checkpoint_copies import PERTURBED, RANDOM, TRAINED, three_checkpoints
from viewer.explain.engine import explain
from viewer.explain.registry import get_method, title_of
from viewer.inference.model import LoadedModel
from viewer.resources import resources_root
from viewer.state import tasks
from viewer.state.runner import InlineRunner
from viewer.state.session import ViewerSession

CHEST = resources_root() / "samples" / "dicom" / "cxr_0002.dcm"


def _unit(values: np.ndarray) -> np.ndarray:
    """The protocol's map, written out here: |value|, min-max to [0, 1]."""
    a = np.abs(values.astype(np.float64))
    return (a - a.min()) / (a.max() - a.min())


def _expected(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    pa, pb = _unit(a), _unit(b)
    return structural_similarity(pa, pb, data_range=1.0), spearmanr(pa.ravel(), pb.ravel()).statistic


@pytest.fixture(scope="module")
def store():
    return tasks.ModelStore()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return three_checkpoints(tmp_path_factory.mktemp("checkpoints"))


def _session(store) -> ViewerSession:
    session = ViewerSession(InlineRunner(), store=store)
    session.model.for_modality = False
    session.choose_model("cxr_resnet18")
    return session


@pytest.mark.slow
def test_a_random_method_is_compared_across_seeds_as_scikit_image_and_scipy_compare_them(store):
    session = _session(store)
    session.explanation.seed = 4
    session.open_paths([CHEST])
    session.stability.start(["smoothgrad"], extra_seeds=2)
    assert not session.reports.errors
    result = session.stability.results()["smoothgrad"]
    assert result.compared == "seeds" and result.seeds == (4, 5, 6)
    assert result.names == ("seed 4", "seed 5", "seed 6")
    model, image, target = store.get(session.model.manifest_path), session.state.image, session.state.target
    maps = {
        s: explain(model, image, [get_method("smoothgrad")], targets=[target], seed=s).maps[0].frame(0)
        for s in (4, 5, 6)
    }
    expected = [_expected(maps[a], maps[b]) for a, b in itertools.combinations((4, 5, 6), 2)]
    for pair, (ssim, rho) in zip(result.pairs, expected, strict=True):
        assert pair.ssim == pytest.approx(ssim, abs=1e-3) and pair.spearman == pytest.approx(rho, abs=1e-3)
    assert result.ssim == pytest.approx(np.mean([s for s, _ in expected]), abs=1e-3)
    # The two layers: the per-pixel mean and standard deviation of the three protocol maps.
    stack = np.stack([_unit(m) for m in maps.values()])
    agreement = session.state.layer("smoothgrad:agreement").map_for(0)
    disagreement = session.state.layer("smoothgrad:disagreement").map_for(0)
    np.testing.assert_allclose(agreement.frame(0) * agreement.scale, stack.mean(0), atol=1e-4)
    np.testing.assert_allclose(disagreement.frame(0) * disagreement.scale, stack.std(0), atol=1e-4)
    # On the protocol's fixed scale, never stretched to the layer's own maximum: seeds of
    # SmoothGrad that nearly agree give a faint disagreement layer, not a full-range one (2 x std).
    assert (agreement.scale, disagreement.scale) == (1.0, 0.5)
    np.testing.assert_allclose(disagreement.frame(0), stack.std(0) / 0.5, atol=1e-4)
    assert agreement.seconds == disagreement.seconds == result.seconds > 0  # what the three maps cost
    assert title_of("smoothgrad:agreement") == "SmoothGrad (agreement)"
    assert "seed 4, seed 5, seed 6" in agreement.notes[0]


@pytest.mark.slow
def test_a_deterministic_method_is_compared_across_the_manifests_checkpoints(store, checkpoints):
    session = _session(store)
    assert session.model.add(checkpoints / "manifest.toml")
    session.open_paths([CHEST])
    session.stability.start(["gradcam", "smoothgrad"], extra_seeds=0)
    assert not session.reports.errors
    results = session.stability.results()
    gradcam = results["gradcam"]
    assert gradcam.compared == "checkpoints" and gradcam.names == (TRAINED, PERTURBED, RANDOM)
    by_pair = {(p.a, p.b): p for p in gradcam.pairs}
    assert by_pair[TRAINED, PERTURBED].ssim > by_pair[TRAINED, RANDOM].ssim
    assert by_pair[TRAINED, PERTURBED].spearman > by_pair[TRAINED, RANDOM].spearman
    # No extra seed: SmoothGrad too is compared over the checkpoints, with the session's seed.
    assert results["smoothgrad"].compared == "checkpoints" and results["smoothgrad"].seeds == (0, 0, 0)
    # The pair of the trained and the random checkpoint, against maps the engine makes on its own.
    image, target = session.state.image, session.state.target
    manifest = store.get(session.model.manifest_path).manifest
    maps = {
        w.stem: explain(LoadedModel(manifest.checkpoint(w)), image, ["gradcam"], targets=[target]).maps[0]
        for w in manifest.checkpoints
    }
    ssim, rho = _expected(maps[TRAINED].frame(0), maps[RANDOM].frame(0))
    assert by_pair[TRAINED, RANDOM].ssim == pytest.approx(ssim, abs=1e-3)
    assert by_pair[TRAINED, RANDOM].spearman == pytest.approx(rho, abs=1e-3)
    assert {"gradcam:agreement", "gradcam:disagreement"} <= {layer.method for layer in session.state.layers}


def test_a_method_with_nothing_to_compare_is_said_so_and_results_follow_the_slice_on_screen(store):
    session = _session(store)
    session.open_paths([CHEST])
    session.stability.start(["gradcam"], extra_seeds=3)
    assert session.stability.results() == {}
    assert "one checkpoint" in session.stability.skipped()["gradcam"]
    assert "nothing to compare" in session.stability.status
    session.stability.start(["gradient-shap"], extra_seeds=1)
    assert set(session.stability.results()) == {"gradient-shap"}
    targets = session.model.prediction.labels
    session.state.target = next(t for t in targets if t != session.state.target)
    assert session.stability.results() == {}  # another target: those numbers are not of it
    assert not any(":" in layer.method for layer in session.state.layers)
