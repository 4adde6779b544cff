"""The viewer session without Qt: opened on the bundled samples with the inline runner, as the
GUI drives it (napari's ViewerModel tests are the pattern)."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.explain.engine import explain
from viewer.resources import resources_root
from viewer.state import tasks
from viewer.state.model_catalog import ModelCatalog
from viewer.state.runner import InlineRunner
from viewer.state.session import ViewerSession

SAMPLES = resources_root() / "samples"
CHEST = SAMPLES / "dicom" / "cxr_0002.dcm"
CT = SAMPLES / "dicom" / "ct_0001"
CHEST_TRUTH = SAMPLES / "annotations" / "cxr_0002.json"
CT_TRUTH = SAMPLES / "annotations" / "ct_0001.json"


@pytest.fixture(scope="module")
def store():
    return tasks.ModelStore()  # models load once for the module's sessions


@pytest.fixture
def session(store):
    session = ViewerSession(InlineRunner(), store=store)
    session.choose_model("cxr_resnet18")
    return session


def _lanes(session, lane: str) -> list[str]:
    return [status for name, status in session.runner.history if name == lane]


def test_opening_a_film_shows_it_predicts_once_and_targets_the_top_label(session):
    opened = []
    session.opening.opened.connect(lambda index, image: opened.append((index, image)))
    session.open_paths([CHEST])
    image = session.state.image
    assert opened == [(0, image)] and (image.rows, image.columns) == (1024, 1024)
    assert _lanes(session, "open") == ["done"] and _lanes(session, "predict") == ["done"]
    prediction = session.model.prediction
    assert prediction.probabilities.shape == (1, len(prediction.labels))
    assert session.state.target == prediction.labels[int(np.argmax(prediction.probabilities[0]))]
    assert session.model.probability() == pytest.approx(float(prediction.probabilities[0].max()))
    assert not session.reports.errors


def test_a_ct_for_a_chest_model_switches_model_without_predicting_on_the_old_image(session):
    session.open_paths([CHEST])
    session.runner.history.clear()
    predicted_on = []
    original = tasks.predict
    tasks.predict = lambda job, store, manifest, image: (
        predicted_on.append(image),
        original(job, store, manifest, image),
    )
    try:
        session.open_paths([CT])
    finally:
        tasks.predict = original
    assert session.state.model == "ct_resnet18"
    # One prediction, of the CT: choosing the CT model did not predict on the film first.
    assert predicted_on == [session.state.image] and session.state.image.n_frames == 28


def test_the_gui_explains_the_same_default_target_as_the_cli_on_a_series(session, store):
    """One target rule: the label most probable on any slice, not on the slice on screen."""
    session.open_paths([CT])
    image = session.state.image
    model = store.get(session.model.manifest_path)
    cli = explain(model, image, [], frames=None)
    assert session.state.target == cli.targets[0]
    assert session.state.frame == image.n_frames // 2


def test_predicting_and_explaining_a_frame_preprocess_it_once(session, store):
    session.open_paths([CHEST])
    model = store.get(session.model.manifest_path)
    before = model.preparations
    session.run_methods(["gradcam", "guided-backprop"])
    assert [layer.method for layer in session.state.layers] == ["gradcam", "guided-backprop"]
    assert model.preparations == before  # the prediction's input served the explanation


def test_opening_decodes_the_first_series_once(session, monkeypatch):
    decoded = []
    original = tasks.load_series
    monkeypatch.setattr(
        tasks, "load_series", lambda series, **kw: (decoded.append(series), original(series, **kw))[1]
    )
    thumbnails = []
    session.opening.thumbnails.connect(lambda batch: thumbnails.extend((i, p.shape) for i, p in batch))
    session.open_paths([CHEST])
    assert len(decoded) == 1 and thumbnails == [(0, (96, 96))]


def test_maps_are_cached_and_layers_follow_the_target(session):
    session.open_paths([CHEST])
    first = session.state.target
    shown = []
    session.explanation.maps_shown.connect(lambda: shown.append(session.state.target))
    job = session.run_methods(["gradcam", "gradcam++"])
    assert job is not None and _lanes(session, "explain") == ["done"] and shown == [first]
    assert session.state.active_layer == "gradcam++"
    assert session.run_methods(["gradcam", "gradcam++"]) is None  # cached: nothing computed
    assert _lanes(session, "explain") == ["done"] and shown == [first, first]
    indices = session.state.layer("gradcam").display_index(0)
    other = next(label for label in session.model.labels if label != first)
    session.state.target = other  # a new target: its maps are not computed yet
    assert len(session.state.layers) == 0
    session.state.target = first  # back: the cached maps return, with the worker's display indices
    assert [layer.method for layer in session.state.layers] == ["gradcam", "gradcam++"]
    assert np.shares_memory(session.state.layer("gradcam").display_index(0), indices)  # not remade


def test_solo_shows_the_selected_layer_alone_and_cycling_wraps(session):
    session.open_paths([CHEST])
    session.run_methods(["gradcam", "gradcam++", "guided-backprop"])
    visible = lambda: [layer.method for layer in session.state.layers if layer.visible]  # noqa: E731
    assert visible() == ["guided-backprop"]
    session.layers.cycle(1)
    assert session.state.active_layer == "gradcam" and visible() == ["gradcam"]
    session.layers.cycle(-1)
    assert session.state.active_layer == "guided-backprop"
    session.layers.set_solo(False)
    session.layers.toggle_all()  # one shown: all off
    assert visible() == []
    session.layers.toggle_all()  # none shown: all on
    assert visible() == ["gradcam", "gradcam++", "guided-backprop"]


def test_run_on_open_waits_for_the_prediction_and_runs_once(session):
    session.explanation.run_on_open = True
    session.explanation.methods = ["gradcam"]
    session.open_paths([CHEST])
    assert _lanes(session, "explain") == ["done"]
    assert [layer.method for layer in session.state.layers] == ["gradcam"]


def test_an_annotation_of_another_image_is_refused_with_the_reason(session):
    session.open_paths([CHEST])
    assert not session.annotation.load(CT_TRUTH)
    assert "does not refer to this image" in session.reports.errors[-1]
    assert session.annotation.load(CHEST_TRUTH)
    assert session.state.annotation is not None and session.state.show_annotation


def test_a_bad_path_is_reported_and_nothing_is_opened(session, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    session.open_paths([tmp_path])
    assert session.state.image is None and session.reports.errors[-1].startswith("No images found")


def test_a_drawn_region_gets_the_target_label_and_an_annotation_to_hold_it(session):
    session.open_paths([CHEST])
    mask = np.zeros((1024, 1024), bool)
    mask[100:200, 100:200] = True
    region = session.annotation.drawn_region(mask)
    assert region.label == session.state.target and region.file == "cxr_0002"
    assert (
        session.state.annotation is not None and session.annotation.drawn_region(np.zeros_like(mask)) is None
    )


def test_thumbnails_of_a_folder_arrive_in_batches_the_first_at_once(session, tmp_path):
    from PIL import Image as PILImage

    for i in range(40):
        PILImage.fromarray(np.full((64, 64), i * 5, np.uint8)).save(tmp_path / f"film_{i:02d}.png")
    batches = []
    session.opening.thumbnails.connect(lambda batch: batches.append([index for index, _ in batch]))
    session.open_paths([tmp_path])
    assert batches[0] == [0]  # the film on screen gets its picture before the others are made
    assert 1 < len(batches) < 40 and sorted(i for b in batches for i in b) == list(range(40))


def test_the_first_image_is_predicted_before_the_thumbnails_are_made(session, tmp_path):
    from PIL import Image as PILImage

    for i in range(5):
        PILImage.fromarray(np.full((64, 64), i * 40, np.uint8)).save(tmp_path / f"film_{i}.png")
    session.runner.history.clear()
    session.open_paths([tmp_path])
    assert [lane for lane, _ in session.runner.history] == ["open", "predict", "thumbnails"]


def test_a_batch_session_explains_every_slice_as_the_engine_does_and_keeps_its_model(store):
    """What ``saliency-viewer explain`` drives: the user's model on a CT (no switch to the CT
    model), no thumbnails, every slice on one scale, the same maps as the engine alone."""
    model = store.get(ModelCatalog().path("cxr_resnet18"))
    session = ViewerSession.batch(model, seed=3)
    explained = []
    session.explanation.series_explained.connect(lambda image, result: explained.append((image, result)))
    session.open_paths([CT])
    image = session.state.image
    assert session.state.model == "cxr_resnet18" and image.n_frames == 28
    assert "thumbnails" not in [lane for lane, _ in session.runner.history]
    session.explanation.explain_series(["gradcam", "guided-backprop"])
    ((shown, result),) = explained
    alone = explain(model, image, ["gradcam", "guided-backprop"], targets=result.targets, seed=3)
    assert shown is image and result.frames == tuple(range(28))
    assert result.targets == (session.state.target,)
    for ours, theirs in zip(result.maps, alone.maps, strict=True):
        assert np.array_equal(ours.array, theirs.array)
    np.testing.assert_allclose(result.probabilities, session.model.prediction.probabilities, atol=1e-5)
    assert not session.reports.errors


def test_explaining_a_series_to_show_fills_the_layer_nearest_slices_first_on_one_scale(store):
    """The GUI's "Run methods on every slice": the chunk of the slice on screen comes first, the
    layer holds every slice so far on one scale after each chunk, the end equals the engine's
    single call, and a second run computes nothing the cache holds."""
    session = ViewerSession(InlineRunner(), store=store)
    session.opening.make_thumbnails = False
    session.open_paths([CT])
    image = session.state.image
    session.state.frame = 20  # in the engine's second chunk of 16 (slices 16-27)
    shown: list[tuple[int, ...]] = []

    def follow(_index, layer) -> None:
        shown.append(tuple(sorted(layer.maps)))  # made with its first map
        layer.events.maps.connect(lambda *_: shown.append(tuple(sorted(layer.maps))))

    session.state.layers.events.inserted.connect(follow)
    session.explanation.explain_series(["gradcam", "guided-backprop"], show=True)
    # Each layer's first chunk is the one on screen; then every slice so far.
    assert shown == [tuple(range(16, 28))] * 2 + [tuple(range(28))] * 2
    assert tuple(sorted(session.state.layer("gradcam").maps)) == tuple(range(28))
    alone = explain(
        store.get(session.model.manifest_path),
        image,
        ["gradcam", "guided-backprop"],
        targets=[session.state.target],
    )
    for method in ("gradcam", "guided-backprop"):
        layer = session.state.layer(method)
        ((ours,),) = [{id(m): m for m in layer.maps.values()}.values()]  # one map over every slice
        theirs = alone.get(method)
        assert ours.frames == theirs.frames and ours.scale == pytest.approx(theirs.scale)
        np.testing.assert_allclose(ours.array, theirs.array, atol=1e-6)
        np.testing.assert_allclose(ours.grid, theirs.grid, atol=1e-6)
    calls = []
    original = tasks.explain
    tasks.explain = lambda *a, **k: calls.append(k.get("frames")) or original(*a, **k)
    try:
        session.explanation.explain_series(["gradcam", "guided-backprop"], show=True)
    finally:
        tasks.explain = original
    assert calls == []  # all in the cache
    assert not session.reports.errors


def test_a_batch_session_says_which_study_failed_and_opens_the_next(store, tmp_path):
    model = store.get(ModelCatalog().path("cxr_resnet18"))
    session = ViewerSession.batch(model)
    broken = tmp_path / "a_broken.dcm"
    data = CHEST.read_bytes()
    broken.write_bytes(data[: len(data) // 3])  # a header, pixel data cut off
    (tmp_path / "b.dcm").write_bytes(data)
    session.open_paths([tmp_path])
    assert len(session.opening.discovery.series) == 2
    session.opening.open_series(1)
    assert session.reports.errors and "a_broken.dcm" in session.reports.errors[0]
    assert session.opening.series_index == 1 and session.state.image.frames[0].source.endswith("b.dcm")
    assert session.model.prediction is not None


def test_a_3d_model_explains_every_slice_at_once_and_says_what_it_cannot_run(store, tmp_path):
    """A user's 3-D MONAI network: one prediction for the series, the slice on screen explained
    by a map over every slice (scrolling computes nothing more), 2-D-only methods marked."""
    pytest.importorskip("monai")
    import torch
    from monai.networks.nets import DenseNet121

    from tests.inference.layouts import seeded, write_manifest

    labels = ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any"]
    torch.save(
        seeded(DenseNet121(spatial_dims=3, in_channels=1, out_channels=6)).state_dict(), tmp_path / "w.pt"
    )
    text = write_manifest(tmp_path, "monai:DenseNet121", "w.pt", labels=labels, in_channels=1).read_text()
    text = text.replace("size = [64, 64]", "size = [32, 64, 64]")
    (tmp_path / "manifest.toml").write_text(
        text.replace("[input]\n", '[input]\nkind = "volume"\nwindows = [[40, 80]]\n')
    )
    session = ViewerSession(InlineRunner(), store=store)
    session.opening.make_thumbnails = False
    support = []
    session.model.support_changed.connect(support.append)
    session.open_paths([CT])
    assert session.model.add(tmp_path / "manifest.toml")
    assert session.model.prediction.per_volume and session.model.prediction.probabilities.shape == (28, 6)
    assert "written for 2-D inputs" in support[-1]["lrp"] and support[-1]["gradcam"] is None
    session.state.target = "subdural"
    session.state.frame = 14
    assert session.run_methods(["gradcam", "gradient"]) is not None
    layer = session.state.layer("gradient")
    assert tuple(sorted(layer.maps)) == tuple(range(28)) and layer.values(3).shape == (512, 512)
    session.state.frame = 3
    assert session.run_methods(["gradcam", "gradient"]) is None  # every slice is in the cache
    session.explanation.explain_series(["gradcam", "gradient"], show=True)
    assert not session.reports.errors
