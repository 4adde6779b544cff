"""The session's parts, each on its own (the session composes them, see ``test_session.py``): a
small in-memory network and array images, so every case runs in well under a second."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.api.sources import array_image
from viewer.io.formats.memory import memory_series
from viewer.io.series import Discovery
from viewer.resources import resources_root
from viewer.state.annotating import Annotating
from viewer.state.layer_book import LayerBook
from viewer.state.map_cache import MapCache
from viewer.state.model_in_use import ModelInUse
from viewer.state.reports import Reports
from viewer.state.runner import InlineRunner, Job, route
from viewer.state.viewer_state import ViewerState

CHEST_TRUTH = resources_root() / "samples" / "annotations" / "cxr_0002.json"


@pytest.fixture
def session(chest_session):
    return chest_session


def _found(*arrays: np.ndarray) -> Discovery:
    return Discovery([memory_series(array_image(a), f"array {i}") for i, a in enumerate(arrays)], [])


def _picture(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((40, 40)).astype(np.float32)


def test_route_sends_each_kind_to_its_handler_and_names_the_owner_of_an_unknown_kind():
    got = []
    on_event = route("opening", {"loaded": got.append})
    on_event("loaded", 3)
    assert got == [3]
    with pytest.raises(KeyError, match="no opening handler for a job's 'map' result"):
        on_event("map", None)


def test_reports_keep_errors_and_turn_only_failed_statuses_into_errors():
    reports, said = Reports(), []
    reports.error.connect(said.append)
    reports.report_failure("Loading", "done")
    reports.report_failure("Loading", "cancelled")
    reports.report_failure("Loading", "failed: no pixel data")
    assert reports.errors == said == ["Loading failed: no pixel data"]


def test_model_part_refuses_an_unknown_name_and_says_which_are_known():
    state, reports = ViewerState(), Reports()
    model = ModelInUse(state, InlineRunner(), reports)
    before = state.model
    assert model.choose("no-such-model") is False
    assert state.model == before and reports.errors[0].startswith("No model named 'no-such-model'; known: ")
    assert before in reports.errors[0]


def test_a_run_waiting_for_the_prediction_starts_once_when_it_comes(session):
    ran = []
    session.model.when_predicted(lambda: ran.append(session.state.target))
    session.opening.open_found(_found(_picture()))
    prediction = session.model.prediction
    assert prediction is not None and session.state.target in prediction.labels
    assert ran == [session.state.target]  # once, with the target the prediction gave
    session.model.predict()
    assert len(ran) == 1


def test_opening_a_new_image_drops_the_old_prediction_and_announces_it(session):
    events = []
    session.model.predicted.connect(lambda p: events.append("predicted" if p is not None else "cleared"))
    session.opening.opened.connect(lambda index, image: events.append(("opened", index)))
    session.opening.open_found(_found(_picture(0), _picture(1)))
    session.opening.open_series(1)
    said = [e for i, e in enumerate(events) if i == 0 or e != events[i - 1]]  # a model chosen clears too
    assert said == ["cleared", ("opened", 0), "predicted", "cleared", ("opened", 1), "predicted"]
    assert session.opening.series_index == 1 and not session.reports.errors


def test_an_opening_without_images_is_an_error_a_user_can_act_on(session):
    session.opening.open_found(Discovery([], []))
    assert session.reports.errors == ["No images found"] and session.state.image is None


def test_a_session_that_does_not_predict_on_open_leaves_the_target_to_the_explanation(session):
    session.model.predict_on_open = False
    session.opening.open_found(_found(_picture()))
    assert session.model.prediction is None and session.state.target == ""
    explained = []
    session.explanation.series_explained.connect(lambda image, result: explained.append(result))
    session.explanation.explain_series(["gradcam"])
    (result,) = explained
    assert result.targets and result.targets[0] in result.labels  # the forward's top prediction


def test_explanation_runs_put_maps_in_the_cache_and_layers_and_say_when_they_end(session):
    session.opening.open_found(_found(_picture()))
    seen = []
    session.explanation.explaining.connect(seen.append)
    session.explanation.method_status.connect(lambda text: seen.append(text.split(" in ")[0]))
    session.run_methods(["gradcam"])
    assert seen == [True, "Computing 1 methods...", False, "1 maps"]
    assert [layer.method for layer in session.state.layers] == ["gradcam"]
    image, state = session.state.image, session.state
    assert session.cache.missing(id(image), state.frame, state.model, state.target, ["gradcam"]) == []


def test_cancel_ends_the_run_and_forgets_a_run_waiting_for_the_prediction(session):
    ran = []
    session.model.when_predicted(lambda: ran.append(1))
    session.cancel()
    session.opening.open_found(_found(_picture()))
    assert ran == [] and session.runner.current("explain") is None


def test_annotating_refuses_a_file_that_names_no_opened_image():
    state, reports, runner = ViewerState(), Reports(), InlineRunner()
    model = ModelInUse(state, runner, reports)
    annotating = Annotating(state, runner, reports, model, found=lambda: None)
    state.open(array_image(_picture()))  # not the radiograph the sample annotation is of
    assert annotating.load(CHEST_TRUTH) is False
    assert reports.errors == [
        "cxr_0002.json does not refer to this image nor to any other opened image "
        "(no SOP Instance UID or file name in common)"
    ]
    assert annotating.book.files == [] and state.annotation is None


def test_a_drawn_region_is_of_the_target_and_held_by_the_image_annotation():
    state, reports, runner = ViewerState(), Reports(), InlineRunner()
    annotating = Annotating(state, runner, reports, ModelInUse(state, runner, reports), found=lambda: None)
    state.open(array_image(_picture()))
    state.target = "effusion"
    mask = np.zeros((40, 40), bool)
    assert annotating.drawn_region(mask) is None  # an empty shape is no region
    mask[5:15, 5:15] = True
    region = annotating.drawn_region(mask)
    assert region.label == "effusion" and state.annotation is annotating.book.for_image(
        state.image, create=True
    )


def test_the_session_shares_one_cache_and_one_layer_book_between_its_parts(session):
    assert session.explanation.cache is session.cache and session.explanation.layers is session.layers
    assert isinstance(session.layers, LayerBook) and isinstance(session.cache, MapCache)
    assert session.opening.model is session.model is session.annotation.model
    job = session.open_paths([])  # an empty opening: a job in the open lane, reported as no images
    assert isinstance(job, Job) and session.reports.errors[-1].startswith("No images found")


def test_the_session_owns_the_crosshair_its_mip_choice_and_the_measurement_book(session):
    said = []
    session.crosshair.mip_changed.connect(said.append)
    session.crosshair.set_mip(True)
    session.crosshair.set_mip(True)  # no change: not said again
    session.crosshair.set_mip(False)
    assert said == [True, False] and session.crosshair.mip is False
    assert session.crosshair.state is session.state and session.measurements.state is session.state
    session.opening.open_found(_found(_picture()))
    assert session.crosshair.reason  # a single film has no three planes, and says why


def test_the_slice_profile_follows_the_prediction_and_the_selected_map(session):
    changes = []
    session.slices.changed.connect(lambda: changes.append(1))
    session.opening.open_found(_found(_picture()))
    prediction, target = session.model.prediction, session.state.target
    column = prediction.probabilities[:, prediction.labels.index(target)]
    np.testing.assert_array_equal(session.slices.probability, column.astype(np.float32))
    assert session.slices.strength is None and changes  # no map yet
    session.run_methods(["gradcam"])
    (layer,) = session.state.layers
    expected = float(np.abs(layer.maps[0].frame_grid(0)).max())
    assert session.slices.strength.tolist() == [pytest.approx(expected)]
