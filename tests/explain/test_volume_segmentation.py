"""3-D segmenters (``task = "segmentation"`` with ``input.kind = "volume"``, a MONAI UNet with
``spatial_dims = 3``): the series read as one input, the masks put back on every slice, and maps of
a region of voxels (the model's own mask, or one given on the slices) equal to Captum's on the
same network, input and region."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam, Saliency

from tests.explain.test_oracles import assert_close
from tests.inference.test_segmentation_models import seeded_weights
from viewer.explain import explain
from viewer.inference.model import LoadedModel
from viewer.inference.segmentation import native_masks
from viewer.inference.volume import onto_model_grid
from viewer.io import discover
from viewer.io.loader import load_series
from viewer.resources import resource_path

SIZE = (16, 48, 48)
LABELS = ("background", "brain", "bleed")


@pytest.fixture(scope="module")
def ct():
    return load_series(discover([resource_path("samples", "dicom", "ct_0001")]).series[0])


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("unet3d")
    path = folder / "manifest.toml"
    path.write_text(
        f'name = "head CT segmenter"\ntask = "segmentation"\nlabels = {list(LABELS)!r}\n'.replace("'", '"')
        + 'modalities = ["CT"]\n[network]\narch = "monai:UNet"\nweights = "w.safetensors"\nin_channels = 1\n'
        "kwargs = {channels = [4, 8, 16], strides = [2, 2], num_res_units = 1}\n"
        f'[input]\nkind = "volume"\nsize = {list(SIZE)}\nwindows = [[40, 80]]\nmean = [0.5]\nstd = [0.25]\n'
    )
    seeded_weights(path)
    return LoadedModel.from_manifest(path, device="cpu")


def _own_forward(model: LoadedModel, x: torch.Tensor, label: int, mask: torch.Tensor):
    """The oracle's score of a region: the label's logits summed over the region's voxels, from
    the network itself (pytorch-grad-cam's SemanticSegmentationTarget, in 3-D)."""

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        return (model.network(inputs)[:, label] * mask).flatten(1).sum(dim=1, keepdim=True)

    return forward


def test_the_series_is_one_input_and_its_masks_are_put_back_on_every_slice(model, ct):
    assert model.volume and model.network.dimensions == 3  # MONAI's UNet built with spatial_dims = 3
    prediction = model.predict(ct)
    assert prediction.masks.shape == (ct.n_frames, len(LABELS), ct.rows, ct.columns)
    assert (prediction.masks.sum(axis=1) == 1).all()  # softmax: every voxel in one label
    x, transform = model.prepare_volume(ct)
    with torch.no_grad():
        probabilities = torch.softmax(model.network(x[None]).float(), dim=1)[0]
    np.testing.assert_array_equal(prediction.masks, native_masks(probabilities, transform, "softmax"))
    # A slice's score of a label: its largest probability on that slice, once back on the slices.
    native = transform.to_native(probabilities)
    np.testing.assert_allclose(prediction.probabilities, native.flatten(2).amax(2).T.numpy(), rtol=1e-5)
    some = model.predict(ct, frames=[3, 17])
    np.testing.assert_array_equal(some.masks, prediction.masks[[3, 17]])
    assert some.frames == [3, 17]


@pytest.mark.parametrize("given", [False, True], ids=["own mask", "region given"])
def test_gradient_and_gradcam_of_a_region_equal_captum(model, ct, given):
    x, transform = model.prepare_volume(ct)
    x = x[None]
    label = LABELS.index("brain")
    with torch.no_grad():
        own = torch.softmax(model.network(x), dim=1).argmax(dim=1)[0] == label
    regions = None
    mask = own.float()
    if given:  # a box over slices 8-19 drawn on the series' own grid
        drawn = np.zeros((ct.n_frames, ct.rows, ct.columns), bool)
        drawn[8:20, 150:350, 100:300] = True
        regions = {"brain": drawn}
        mask = (onto_model_grid(transform, (s[None].astype(np.float32) for s in drawn))[0] >= 0.5).float()
        assert 0 < mask.sum() < mask.numel() and not torch.equal(mask, own.float())
    result = explain(model, ct, ["gradient", "gradcam"], targets=["brain"], regions=regions)
    maps = {m.method: m for m in result.maps}
    for m in maps.values():
        assert m.array.shape == (ct.n_frames, ct.rows, ct.columns) and m.grid.shape == SIZE
        assert any(("the region given" if given else "own mask") in note for note in m.notes), m.notes
    assert result.masks.shape == (ct.n_frames, len(LABELS), ct.rows, ct.columns)
    forward = _own_forward(model, x, label, mask)
    expected = Saliency(forward).attribute(x.clone(), target=0, abs=True).detach().amax(dim=1)[0]
    assert_close(torch.from_numpy(maps["gradient"].grid), expected / expected.max(), tol=1e-5)
    layer = dict(model.network.named_modules())[model.target_layer]
    cam = LayerGradCam(forward, layer).attribute(x.clone(), target=0, relu_attributions=True).detach()
    cam = F.interpolate(cam / cam.max(), size=SIZE, mode="trilinear", align_corners=False)[0, 0]
    assert float(cam.max()) > 0
    assert_close(torch.from_numpy(maps["gradcam"].grid), cam, tol=1e-4)


def test_a_region_given_on_one_slice_is_refused_for_a_3d_segmenter(model, ct):
    with pytest.raises(ValueError, match="one mask per slice"):
        explain(
            model,
            ct,
            ["gradient"],
            targets=["brain"],
            regions={"brain": np.ones((ct.rows, ct.columns), bool)},
        )


def test_in_the_window_a_region_clicked_on_a_slice_is_explained_as_those_voxels(model, ct):
    """The session (what the window binds to): the 3-D segmenter's masks per slice, a click on a
    slice choosing the component there, and the maps explaining that slice's part of the mask."""
    from viewer.state import tasks
    from viewer.state.runner import InlineRunner
    from viewer.state.session import ViewerSession

    store = tasks.ModelStore()
    session = ViewerSession(InlineRunner(), store=store)
    session.explanation.methods = ["gradient"]
    assert session.model.add(model.manifest.path)
    session.model.for_modality = False  # keep the segmenter on the series
    session.open_paths([resource_path("samples", "dicom", "ct_0001")])
    assert not session.reports.errors, session.reports.errors
    assert session.model.prediction.masks.shape == (ct.n_frames, len(LABELS), ct.rows, ct.columns)
    outputs = session.outputs
    session.state.frame = 14
    mask = outputs.mask("brain")
    assert mask.shape == (ct.rows, ct.columns) and mask.any()
    rows, cols = np.nonzero(mask)
    region = outputs.pick(int(rows[len(rows) // 2]), int(cols[len(cols) // 2]), "brain")
    assert region is not None and region.frame == 14
    given = outputs.regions()["brain"]
    assert given.shape == (ct.n_frames, ct.rows, ct.columns)
    assert np.array_equal(given[14], region.mask) and not given[:14].any() and not given[15:].any()
    layer = session.state.layer("gradient")
    assert layer is not None
    expected = explain(
        store.get(model.manifest.path), ct, ["gradient"], targets=["brain"], regions={"brain": given}
    )
    np.testing.assert_allclose(layer.values(14), expected.maps[0].frame(14), atol=1e-6)
    # Other slices: the same region (voxels of the series), its map there; not the model's mask.
    session.state.frame = 10
    assert outputs.region is region and np.array_equal(outputs.regions()["brain"], given)
    np.testing.assert_allclose(
        session.state.layer("gradient").values(10), expected.maps[0].frame(10), atol=1e-6
    )
