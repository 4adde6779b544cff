"""LIME and RISE as anytime methods: the engine streams their estimate so far as previews (marked by
their ``progress``), and the final map is the very map of a run without previews, for the same seed.
The registry says which methods are slow, from their classes. Small sample counts on the bundled
chest model, so each test takes seconds."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.explain import METHODS, explain, get_method
from viewer.explain.perturbation import _Stopping
from viewer.explain.registry import (
    SLOW_SECONDS,
    default_methods,
    fast_default_methods,
    is_slow,
    speed_label,
    speed_note,
)
from viewer.inference.catalog import bundled_models
from viewer.inference.model import LoadedModel
from viewer.io import discover
from viewer.io.loader import load_series
from viewer.resources import resource_path

SMALL = {
    "lime": {"samples": 64, "superpixels": 30, "step": 32, "min_samples": 32},
    "rise": {"masks": 64, "step": 32, "min_masks": 32},
}


@pytest.fixture(scope="module")
def chest():
    model = LoadedModel.from_manifest(bundled_models()["cxr_resnet18"])
    image = load_series(discover([resource_path("samples", "dicom", "cxr_0002.dcm")]).series[0])
    return model, image


@pytest.fixture
def every_batch(monkeypatch):
    """A preview after every batch (by time they come at most every 2 s)."""
    monkeypatch.setattr(_Stopping, "PREVIEW_FIRST_S", 0.0)
    monkeypatch.setattr(_Stopping, "PREVIEW_EVERY_S", 0.0)


@pytest.mark.parametrize("method_id", ["lime", "rise"])
def test_previews_come_before_the_final_map_which_equals_a_run_without_them(chest, every_batch, method_id):
    model, image = chest
    previews, finals = [], []
    shown = explain(
        model,
        image,
        [get_method(method_id, **SMALL[method_id])],
        frames=[0],
        seed=7,
        batch_size=8,
        on_preview=previews.append,
        on_result=finals.append,
    )
    method = get_method(method_id, **SMALL[method_id])
    plain = explain(model, image, [method], frames=[0], seed=7, batch_size=8)
    assert np.array_equal(shown.maps[0].array, plain.maps[0].array)
    assert np.array_equal(shown.maps[0].grid, plain.maps[0].grid)
    assert shown.maps[0].notes == plain.maps[0].notes and shown.maps[0].progress == ""
    # Every batch before the end gave a preview: the samples so far, each more than the last.
    counts = [int(p.progress.split("/")[0]) for p in previews]
    assert counts == sorted(counts) and counts[0] == 8 and len(set(counts)) == len(counts)
    n = SMALL[method_id]["samples" if method_id == "lime" else "masks"]
    assert counts[-1] < n and all(p.progress.endswith(("samples", "masks", "settling")) for p in previews)
    first = previews[0]
    assert first.frames == (0,) and first.array.shape == plain.maps[0].array.shape
    assert first.method == method_id and first.target == plain.maps[0].target
    assert "so far: 8 of at most" in first.notes[0] and "not settled yet" in first.notes[0]
    assert first.scale > 0 and np.isfinite(first.array).all()
    assert not np.array_equal(first.array, plain.maps[0].array)  # a rough estimate, refined later


def test_previews_over_several_frames_cover_the_frames_done_so_far(every_batch):
    """A chunk of three CT slices: a preview of the second slice shows the first one finished."""
    model = LoadedModel.from_manifest(bundled_models()["ct_resnet18"])
    image = load_series(discover([resource_path("samples", "dicom", "ct_0001")]).series[0])
    previews = []
    method = get_method("rise", masks=16, step=8, min_masks=16)
    result = explain(model, image, [method], frames=[10, 11, 12], batch_size=8, on_preview=previews.append)
    covered = [p.frames for p in previews]
    assert covered[0] == (10,) and (10, 11) in covered and (10, 11, 12) in covered
    assert covered == sorted(covered, key=len)
    # The finished slices in a preview are on the preview's scale: the same map up to the scale.
    done = next(p for p in previews if p.frames == (10, 11, 12))
    final = result.maps[0]
    np.testing.assert_allclose(done.array[0] * done.scale, final.array[0] * final.scale, rtol=1e-4, atol=1e-6)


def test_without_previews_a_run_makes_none_and_other_methods_never_preview(chest, every_batch):
    model, image = chest
    previews = []
    occlusion = get_method("occlusion", window=64, stride=64)
    explain(model, image, ["gradcam", occlusion], frames=[0], on_preview=previews.append)
    assert previews == []


def test_the_registry_says_which_methods_are_slow_and_offers_a_fast_default_set():
    assert is_slow("lime") and is_slow("rise") and not is_slow("gradcam")
    assert METHODS["lime"].anytime and METHODS["rise"].anytime and not METHODS["occlusion"].anytime
    assert set(default_methods()) - set(fast_default_methods()) == {"lime"}
    assert all(METHODS[m].seconds < SLOW_SECONDS for m in fast_default_methods())
    assert speed_label("gradcam") == "" and "under a second" in speed_note("gradcam")
    assert speed_label("scorecam") == "~4 s"  # measured 3.5 s: not slow, but not instant
    assert speed_label("lime") == "slow, ~60 s" and "first map shows after about 2 s" in speed_note("lime")
    assert speed_label("occlusion") == "slow, ~6 s"
    assert "slow, run after the others" in speed_note("occlusion")
