"""The plan of "Run methods on every slice": fast methods over the whole series first, each slow
one after (quickest first), chunk by chunk from the slice on screen outwards, skipping what the
cache holds; and the status it gives names the method and the slices being computed. No model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from viewer.state.series_run import SeriesProgress, Step, phases, plan, slices_text


def test_fast_methods_go_first_together_then_each_slow_one_quickest_first():
    assert phases(["lime", "gradcam", "occlusion", "guided-backprop", "rise"]) == [
        ("gradcam", "guided-backprop"),
        ("occlusion",),
        ("rise",),
        ("lime",),
    ]
    assert phases(["lime"]) == [("lime",)]


def test_every_method_covers_the_series_chunk_by_chunk_from_the_slice_on_screen():
    steps = plan(["lime", "gradcam"], ["subdural"], 40, around=20)
    assert steps == [
        Step(("gradcam",), tuple(range(16, 32))),
        Step(("gradcam",), tuple(range(16))),  # as near as the next: the lower chunk first
        Step(("gradcam",), tuple(range(32, 40))),
        Step(("lime",), tuple(range(16, 32))),
        Step(("lime",), tuple(range(16))),
        Step(("lime",), tuple(range(32, 40))),
    ]


def test_frames_the_cache_holds_for_every_method_of_a_step_are_not_computed_again():
    cached = SimpleNamespace(frames=tuple(range(16)))
    known = {("gradcam", "a"): [cached], ("guided-backprop", "a"): [cached], ("lime", "a"): [cached]}
    steps = plan(["gradcam", "guided-backprop", "lime"], ["a"], 28, around=0, known=known)
    assert [s.frames for s in steps] == [tuple(range(16, 28))] * 2
    # A method the cache lacks makes its step compute the chunk (the shared pass serves both).
    steps = plan(["gradcam", "deconvnet"], ["a"], 28, around=0, known=known)
    assert [s.frames for s in steps] == [tuple(range(16)), tuple(range(16, 28))]


def test_the_status_names_the_method_and_slices_and_weighs_steps_by_their_cost():
    steps = plan(["gradcam", "lime"], ["a"], 28, around=20)
    status = SeriesProgress(steps, 28)
    text, fraction = status.at(0, "gradcam", 0.5)
    assert text == "Grad-CAM: slices 17-28 of 28 (step 1 of 4)"
    assert fraction < 0.001  # Grad-CAM over 12 slices is nothing next to LIME's
    text, fraction = status.at(3, "lime", 0.5)
    assert text == "LIME: slices 1-16 of 28 (step 4 of 4)"
    assert fraction == pytest.approx(1 - 0.5 * 16 / 28, abs=0.01)
    assert slices_text([4], 28) == "slice 5 of 28"
    assert slices_text([1, 2, 5], 28) == "slices 2-6 (3 of them) of 28"
