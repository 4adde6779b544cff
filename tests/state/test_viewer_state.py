"""The Qt-free viewer state: events, windowing, slices, layers, the map cache and corner text."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.explain.saliency_map import SaliencyMap
from viewer.io import discover, load_series
from viewer.resources import resources_root
from viewer.state import LayerList, MapCache, MapKey, SaliencyLayer, ViewerState
from viewer.state.layers import default_display
from viewer.state.overlay_text import corner_texts

SAMPLES = resources_root() / "samples" / "dicom"


@pytest.fixture(scope="module")
def chest():
    return load_series(discover([SAMPLES / "cxr_0002.dcm"]).series[0])


@pytest.fixture(scope="module")
def ct():
    return load_series(discover([SAMPLES / "ct_0001"]).series[0])


def _map(method="gradcam", frames=(0,), shape=(8, 8), convention="unit", target="effusion", value=None):
    rng = np.random.default_rng(0)
    array = rng.random((len(frames), *shape)).astype(np.float32) if value is None else value
    return SaliencyMap(method, target, 0, tuple(frames), array, array.copy(), convention, 1.0, 0.01)


def test_opening_an_image_sets_its_window_slice_and_clears_layers(chest, ct):
    state = ViewerState()
    seen = []
    state.events.frame.connect(seen.append)
    state.layers.append(SaliencyLayer("gradcam", "unit"))
    state.open(ct)
    assert state.frame == 14 and seen == [14]  # a volume opens on its middle slice
    assert not state.layers and state.image is ct
    state.step_frame(100)
    assert state.frame == 27
    state.set_frame(-3)
    assert state.frame == 0
    state.open(chest)
    assert state.voi == chest.default_window and state.frame == 0
    assert state.invert == chest.invert


def test_window_adjustments_keep_a_positive_width_and_the_file_function(ct):
    state = ViewerState()
    state.open(ct)
    function = state.voi.function
    state.set_window(40, 80, "Brain")
    assert (state.voi.center, state.voi.width, state.voi.name) == (40, 80, "Brain")
    assert state.voi.function == function
    state.adjust_window(d_center=10, d_width=-1e9)
    center, width = state.window_values()
    assert center == 50 and 0 < width < 1
    state.reset_window()
    assert state.voi == ct.default_window or state.voi.source == "auto"


def test_layers_collect_maps_per_frame_and_announce_them():
    layer = SaliencyLayer("guided-backprop", "absolute")
    assert layer.colormap == "jet" and layer.title == "Guided Backprop"
    events = []
    layer.events.maps.connect(lambda *a: events.append(a))
    layer.add(_map("guided-backprop", frames=(3, 4), convention="absolute"))
    assert events and layer.values(4) is not None and layer.values(5) is None
    signed = SaliencyLayer("integrated-gradients", "signed")
    assert signed.colormap == "diverging" and signed.signed
    layers = LayerList([layer, signed])
    assert layers.get("integrated-gradients") is signed
    assert layers.visible_on(3) == [layer]


def test_gradient_maps_open_with_a_ramp_that_shows_them():
    sparse = np.zeros((1, 64, 64), np.float32)
    sparse[0, :, :32] = np.linspace(0, 0.1, 32)  # most of the map is weak, one pixel is the peak
    sparse[0, 0, 0] = 1.0
    display = default_display(_map(convention="absolute", shape=(64, 64), value=sparse))
    assert display["high"] < 0.2 and display["low"] < display["high"]
    assert default_display(_map()) == {"low": 0.2, "high": 1.0}


def test_map_cache_finds_maps_per_image_model_target_and_evicts_oldest():
    cache = MapCache(max_bytes=3 * 2 * 8 * 8 * 4)  # room for three maps (array + grid)
    a, b = _map("gradcam"), _map("lime")
    cache.put(1, "m", a)
    cache.put(1, "m", b)
    assert cache.get(MapKey(1, 0, "m", "effusion", "gradcam")) is a
    assert cache.missing(1, 0, "m", "effusion", ["gradcam", "lime", "rise"]) == ["rise"]
    assert cache.find(1, "m", "effusion") == [a, b]
    assert cache.find(1, "m", "nodule") == [] and cache.find(2, "m", "effusion") == []
    cache.put(1, "m", _map("rise"))
    cache.put(1, "m", _map("occlusion"))  # the fourth evicts the least recently used: lime
    assert cache.get(MapKey(1, 0, "m", "effusion", "lime")) is None
    assert cache.get(MapKey(1, 0, "m", "effusion", "gradcam")) is a
    cache.drop_image(1)
    assert len(cache) == 0


def test_corner_text_shows_the_study_and_hides_identifiers_on_request(chest, ct):
    state = ViewerState()
    state.open(ct)
    texts = corner_texts(state, 1.5)
    assert "Im 15/28" in texts["bottom_left"] and "Thk 5 mm" in texts["bottom_left"]
    assert "Zoom 150%" in texts["bottom_right"] and "HU" in texts["bottom_right"]
    name = ct.identity.patient_name.replace("^", " ").strip()
    assert name and name in texts["top_left"]
    hidden = corner_texts(state, 1.5, hide_phi=True)
    assert name not in "".join(hidden.values()) and ct.identity.patient_id not in "".join(hidden.values())
    state.open(chest)
    state.invert = not chest.invert
    assert "Inverted" in corner_texts(state, 1.0)["bottom_right"]


def test_a_new_image_is_never_seen_with_the_old_slice(chest, ct):
    state = ViewerState()
    state.open(ct)
    seen = []
    state.events.image.connect(lambda image, *_: seen.append((image.n_frames, state.frame, state.voi)))
    state.events.frame.connect(lambda frame, *_: seen.append(("frame", frame)))
    state.open(chest)
    assert seen[0] == (1, 0, chest.default_window)  # the film with its own slice and window
    assert ("frame", 0) in seen  # and the slice is announced to views that follow it
