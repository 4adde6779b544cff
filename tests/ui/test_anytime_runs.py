"""LIME and RISE as anytime methods in the real window, and "Run methods on every slice" with a
slow method among the ticked ones.

On the chest film a first LIME (and RISE) map is on screen long before the final one, the layer is
updated in place with a caption and notes that say how far it got, and the final map is the very
array the engine computes without previews for the same seed. Over the head CT the fast methods
cover every slice before LIME's first chunk, the status names the slices actually being computed,
and the Cancel button is live during the run and stops it. Sampling is cut down (fewer samples)
so each test takes tens of seconds on two cores; the behaviour does not depend on the counts.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.ui.helpers import CHEST, CT, open_and_wait, run_and_wait
from viewer.explain import context as explain_context
from viewer.explain import explain
from viewer.explain.perturbation import LIME, RISE
from viewer.explain.registry import title_of


def _fewer(monkeypatch, cls, **params) -> None:
    defaults = cls.defaults()
    monkeypatch.setattr(cls, "defaults", classmethod(lambda _cls: {**defaults, **params}))


class _Always(dict):
    """A batch-size table that has tuned every network to the same size."""

    def get(self, key, default=None) -> int:
        return 16


@pytest.fixture
def small_sampling(monkeypatch):
    """200 draws, checked at 100; batches of 16 whatever the timing, so that the window's run and
    the reference run split the draws alike (tuned batch sizes move the scores by float rounding,
    with or without previews)."""
    _fewer(monkeypatch, LIME, samples=200)
    _fewer(monkeypatch, RISE, masks=200, min_masks=200)
    monkeypatch.setattr(explain_context, "_TUNED", _Always())


def _follow_layers(window, record) -> None:
    """Call ``record(layer)`` when a layer is made and each time its maps change."""

    def inserted(_index, layer) -> None:
        record(layer, new=True)
        layer.events.maps.connect(lambda *_: record(layer))

    window.state.layers.events.inserted.connect(inserted)


def test_lime_and_rise_show_a_first_map_early_refine_it_in_place_and_end_as_the_plain_run(
    qtbot, window, small_sampling
):
    open_and_wait(qtbot, window, [CHEST])
    seen: dict[str, list[tuple]] = {"lime": [], "rise": []}
    made: dict[str, list] = {"lime": [], "rise": []}
    panel = window.layer_panel

    def record(layer, new=False) -> None:
        smap = layer.map_for(0)
        if smap is None or layer.method not in seen:
            return
        if new:
            made[layer.method].append(layer)
        caption = panel.list.item(panel._row_of(layer.method)).text()
        info = panel.info.text() if window.state.active_layer == layer.method else ""
        overlay = window.canvas.overlays.get(layer.method)
        seen[layer.method].append((smap.progress, caption, info, smap, id(overlay)))

    _follow_layers(window, record)
    run_and_wait(qtbot, window, ["lime", "rise"])
    session = window.session
    model = session.model.store.get(session.model.manifest_path)
    for method in ("lime", "rise"):
        events = seen[method]
        assert len(made[method]) == 1  # one layer, made once, updated in place
        previews, final = events[:-1], events[-1]
        assert previews and all(progress for progress, *_ in previews)  # shown before the final map
        counts = [int(re.match(r"(\d+)/200 ", progress).group(1)) for progress, *_ in previews]
        assert counts == sorted(counts) and counts[0] <= 100  # a first map from the first batches
        progress, caption, *_ = previews[0]
        assert caption == f"{title_of(method)}  {progress}..."  # the caption says how far it got
        assert len({overlay for *_, overlay in events}) == 1  # the same item on the canvas
        assert final[0] == "" and re.match(rf"{title_of(method)}  \d+\.\d\d s$", final[1])
        assert window.state.layer(method).map_for(0) is final[3]
        # The final map is the engine's without previews, for the same seed: the same array.
        alone = explain(model, window.state.image, [method], targets=[window.state.target], frames=[0])
        assert np.array_equal(final[3].array, alone.maps[0].array)
        assert final[3].notes == alone.maps[0].notes
    # The notes of the layer on screen said how many samples so far and whether it had settled.
    infos = [info for events in seen.values() for _, _, info, *_ in events[:-1] if info]
    assert infos and all(re.search(r"so far: \d+ of (at most )?200 ", info) for info in infos)
    assert any("not settled yet" in info or "steady" in info for info in infos)
    assert re.match(r"2 maps in \d+\.\d s$", window.model_panel.status.text())


def test_a_series_run_does_the_fast_methods_first_says_where_it_is_and_cancel_stops_it(
    qtbot, window, monkeypatch
):
    _fewer(monkeypatch, LIME, samples=24, superpixels=30)
    open_and_wait(qtbot, window, [CT])
    window.state.frame = 20  # the engine's second chunk of 16: slices 17-28 first
    window.session.explanation.methods = ["gradcam", "lime", "guided-backprop"]
    log: list[tuple] = []
    covered: dict[str, set[int]] = {}

    def record(layer, new=False) -> None:
        smap = next(iter(layer.maps.values()))
        if smap.progress:  # an estimate: its slices are not computed yet (what it adds is not counted)
            log.append(("map", layer.method, frozenset(), smap.progress, window.model_panel.status.text()))
            return
        frames = set(layer.maps)
        added = frames - covered.get(layer.method, set())
        covered[layer.method] = frames
        log.append(("map", layer.method, frozenset(added), smap.progress, window.model_panel.status.text()))

    _follow_layers(window, record)
    window.session.reports.progress.connect(
        lambda lane, step, f: lane == "explain" and log.append(("status", step))
    )
    panel = window.model_panel
    assert not panel.cancel_button.isEnabled()
    job = window.explain_series()
    assert panel.cancel_button.isEnabled()  # live for a run over the series, as for one slice
    qtbot.waitUntil(lambda: "lime" in covered and len(covered["lime"]) >= 12, timeout=240_000)

    # Grad-CAM and Guided Backprop covered every slice before LIME showed anything.
    first_lime = next(i for i, entry in enumerate(log) if entry[0] == "map" and entry[1] == "lime")
    for method in ("gradcam", "guided-backprop"):
        before = set().union(*(e[2] for e in log[:first_lime] if e[0] == "map" and e[1] == method))
        assert before == set(range(28)), method
    # Each chunk's map arrived while the status named that method and those slices.
    for i, entry in enumerate(log):
        if entry[0] != "map" or entry[3] or not entry[2]:
            continue  # a preview, or a layer event that added no slice
        _, method, added, _, shown = entry
        status = next(e[1] for e in reversed(log[:i]) if e[0] == "status")
        where = f"{title_of(method)}: slices {min(added) + 1}-{max(added) + 1} of 28"
        assert status.startswith(where), (status, where)
        assert shown.startswith(where)  # what the model panel said
    assert [sorted(e[2]) for e in log if e[0] == "map" and e[1] == "gradcam" and e[2]][:2] == [
        list(range(16, 28)),
        list(range(16)),
    ]

    # Cancel (the button, not Esc) stops the run: at once on screen, and the worker soon after.
    with qtbot.waitSignal(window.runner.finished, timeout=30_000, check_params_cb=lambda j, s: j is job):
        qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
        assert job.cancelled and not panel.cancel_button.isEnabled()
        assert panel.status.text() == "Cancelled"
        assert "slices" not in window.statusBar().currentMessage()  # no stale progress line
        after = len(log)
    qtbot.wait(300)
    assert [e for e in log[after:] if e[0] == "map" and e[2]] == []  # nothing of it lands later
    assert all(not smap.progress for layer in window.state.layers for smap in layer.maps.values())
    assert len(covered["lime"]) < 28
    # A new image replaces the run's status.
    open_and_wait(qtbot, window, [CHEST])
    assert panel.status.text() == ""


def test_cancel_during_an_estimate_drops_it_and_shows_the_newest_finished_map(qtbot, window, small_sampling):
    open_and_wait(qtbot, window, [CHEST])
    previews = []
    _follow_layers(
        window, lambda layer, new=False: previews.append(layer.method) if layer.method == "lime" else None
    )
    window.run_methods(["gradcam", "lime"])
    qtbot.waitUntil(lambda: "lime" in previews and window.state.active_layer == "lime", timeout=300_000)
    assert window.state.layer("lime").map_for(0).progress  # an estimate, not the final map
    qtbot.mouseClick(window.model_panel.cancel_button, Qt.MouseButton.LeftButton)
    assert [layer.method for layer in window.state.layers] == ["gradcam"]  # nothing of LIME stays
    assert window.state.active_layer == "gradcam" and window.state.layer("gradcam").visible
    assert window.model_panel.status.text() == "Cancelled"
