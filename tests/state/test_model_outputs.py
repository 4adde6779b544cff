"""``session.outputs``: a segmenter's masks on screen, the region its maps explain (the model's
mask, a clicked component, a drawn region) and the masks' agreement with the annotation. No Qt:
the inline runner, a seeded MONAI UNet and the bundled chest sample."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tests.inference.test_segmentation_models import seeded_weights
from viewer.explain.engine import explain
from viewer.resources import resources_root
from viewer.state import tasks
from viewer.state.model_outputs import ChosenRegion
from viewer.state.runner import InlineRunner
from viewer.state.session import ViewerSession

SAMPLES = resources_root() / "samples"
CHEST = SAMPLES / "dicom" / "cxr_0001.dcm"
CHEST_TRUTH = SAMPLES / "annotations" / "cxr_0001.json"
LABELS = ("background", "nodule", "consolidation")


def write_segmenter(folder):
    """A seeded MONAI UNet segmenter of ``LABELS`` (softmax: every pixel has a label) in ``folder``."""
    path = folder / "manifest.toml"
    path.write_text(
        'name = "chest segmenter"\ntask = "segmentation"\n'
        'labels = ["background", "nodule", "consolidation"]\nmodalities = ["CR", "DX"]\n'
        '[network]\narch = "monai:UNet"\nweights = "w.safetensors"\nin_channels = 1\n'
        'activation = "softmax"\nkwargs = {channels = [4, 8], strides = [2]}\n'
        '[input]\nsize = [64, 64]\nintensity = "voi"\nmean = [0.5]\nstd = [0.25]\n'
    )
    seeded_weights(path)
    return path


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_segmenter(tmp_path_factory.mktemp("segmenter"))


@pytest.fixture(scope="module")
def store():
    return tasks.ModelStore()


@pytest.fixture
def session(store, manifest):
    session = ViewerSession(InlineRunner(), store=store)
    assert session.model.add(manifest)
    session.model.for_modality = False  # keep the segmenter on the chest film
    session.explanation.methods = ["gradient"]
    session.open_paths([CHEST])
    assert session.model.prediction is not None and not session.reports.errors
    return session


def _map(session, method: str = "gradient") -> np.ndarray:
    layer = session.state.layer(method)
    assert layer is not None
    return layer.values(session.state.frame)


def _reference(session, store, manifest, label: str, regions=None) -> np.ndarray:
    model = store.get(manifest)
    result = explain(model, session.state.image, ["gradient"], targets=[label], frames=[0], regions=regions)
    return result.maps[0].frame(0)


def test_the_prediction_brings_one_mask_layer_per_label(session):
    outputs, image = session.outputs, session.state.image
    assert outputs.labels == LABELS
    masks = session.model.prediction.masks
    assert masks.shape == (1, 3, image.rows, image.columns)
    for k, label in enumerate(LABELS):
        assert np.array_equal(outputs.mask(label), masks[0, k])
    shown = [label for label, _ in outputs.shown_masks()]
    assert shown == [label for k, label in enumerate(LABELS) if masks[0, k].any()]
    outputs.show(shown[0], False)
    assert shown[0] not in [label for label, _ in outputs.shown_masks()]
    outputs.set_style("fill")
    assert outputs.style == "fill"
    with pytest.raises(ValueError, match="outline, fill"):
        outputs.set_style("dots")


def test_a_click_explains_the_connected_component_under_it(session, store, manifest):
    outputs, state = session.outputs, session.state
    label = next(name for name in LABELS[1:] if outputs.mask(name).any())
    mask = outputs.mask(label)
    components, count = ndimage.label(mask, structure=np.ones((3, 3)))  # 8-connected, the reference
    sizes = np.bincount(components.ravel())[1:]
    which = int(np.argmax(sizes)) + 1
    rows, cols = np.nonzero(components == which)
    row, col = int(rows[len(rows) // 2]), int(cols[len(cols) // 2])
    changed = []
    outputs.region_changed.connect(changed.append)

    region = outputs.pick(row, col, label)

    assert region is not None and changed == [region] and state.target == label
    assert np.array_equal(region.mask, components == which)
    assert outputs.regions() == {label: region.mask}
    expected = _reference(session, store, manifest, label, {label: region.mask})
    np.testing.assert_allclose(_map(session), expected, atol=1e-6)
    if count > 1:  # a part, not the whole mask: the map differs from the whole mask's
        assert not np.allclose(expected, _reference(session, store, manifest, label))


def test_going_back_to_the_models_mask_recomputes_its_maps(session, store, manifest):
    outputs = session.outputs
    label = next(name for name in LABELS[1:] if outputs.mask(name).any())
    rows, cols = np.nonzero(outputs.mask(label))
    outputs.pick(int(rows[0]), int(cols[0]), label)
    outputs.use_models_mask()
    assert outputs.region is None and outputs.regions() == {}
    np.testing.assert_allclose(_map(session), _reference(session, store, manifest, label), atol=1e-6)


def test_a_click_outside_every_mask_chooses_nothing_and_says_so(session):
    outputs, messages = session.outputs, []
    session.reports.message.connect(lambda text, _ms: messages.append(text))
    empty = np.argwhere(~np.logical_or.reduce([outputs.mask(label) for label in LABELS[1:]]))
    if not len(empty):
        pytest.skip("the seeded network marks every pixel")
    row, col = (int(v) for v in empty[0])
    outputs.show("background", False)
    assert outputs.pick(row, col, "nodule") is None and outputs.region is None
    assert any("No model mask" in m for m in messages)


def test_a_drawn_region_is_explained_as_given(session, store, manifest):
    state, outputs = session.state, session.outputs
    state.target = "nodule"
    drawn = np.zeros((state.image.rows, state.image.columns), bool)
    drawn[300:420, 500:640] = True
    region = session.annotation.drawn_region(drawn)
    state.annotation.regions.append(region)  # what the Edit menu's AddRegion does

    chosen = outputs.use_drawn()

    assert isinstance(chosen, ChosenRegion) and chosen.label == "nodule"
    assert np.array_equal(chosen.mask, drawn)
    expected = _reference(session, store, manifest, "nodule", {"nodule": drawn})
    np.testing.assert_allclose(_map(session), expected, atol=1e-6)


def test_the_masks_agreement_with_the_annotation_is_dice_and_iou(session):
    assert session.annotation.load(CHEST_TRUTH)
    annotation, image = session.state.annotation, session.state.image
    found = {a.label: a for a in session.outputs.agreement()}
    assert set(found) == {"nodule", "consolidation"}  # background is not annotated
    for k, label in enumerate(LABELS):
        if label not in found:
            continue
        ours, truth = session.model.prediction.masks[0, k], annotation.mask(image, label)[0]
        both = np.count_nonzero(ours & truth)
        assert found[label].dice == pytest.approx(2 * both / (ours.sum() + truth.sum()))
        assert found[label].iou == pytest.approx(both / np.count_nonzero(ours | truth))
        assert found[label].annotated_pixels == truth.sum()


def test_a_new_frame_or_prediction_forgets_the_chosen_region(session):
    outputs = session.outputs
    label = next(name for name in LABELS[1:] if outputs.mask(name).any())
    rows, cols = np.nonzero(outputs.mask(label))
    outputs.pick(int(rows[0]), int(cols[0]), label)
    assert outputs.region is not None
    session.model.predict()
    assert outputs.region is None and outputs.labels == LABELS
