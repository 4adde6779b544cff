"""2.5-D models (``input.context = "adjacent-slices"``): the input of a slice holds its
neighbours as channels, as the RSNA intracranial haemorrhage winners fed them; the manifest's
channel arithmetic is checked; the prediction of a slice depends on its neighbours and no other;
maps are computed and attributed to the centre slice."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision

from tests.inference.layouts import seeded, write_manifest
from viewer.explain.engine import explain
from viewer.inference.manifest import ManifestError, load_manifest
from viewer.inference.model import LoadedModel
from viewer.inference.preprocess import prepare_frame
from viewer.io import discover, load_series
from viewer.io.image import Window
from viewer.io.voi import apply_window
from viewer.resources import resource_path

LABELS = ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any"]
BRAIN = '[input]\ncontext = "adjacent-slices"\nneighbours = 1\nwindows = [[40, 80]]\n'


@pytest.fixture(scope="module")
def ct():
    return load_series(discover([resource_path("samples", "dicom", "ct_0001")]).series[0])


def _model(tmp_path, inputs: str = BRAIN, channels: int = 3) -> LoadedModel:
    network = torchvision.models.resnet18(num_classes=len(LABELS))
    network.conv1 = torch.nn.Conv2d(channels, 64, 7, 2, 3, bias=False)  # as the user trained it
    network = seeded(network)
    torch.save(network.state_dict(), tmp_path / "weights.pt")
    text = write_manifest(tmp_path, "resnet18", "weights.pt", labels=LABELS, in_channels=channels).read_text()
    # The helper's [input] table, with the 2.5-D keys in it.
    (tmp_path / "manifest.toml").write_text(text.replace("[input]\n", inputs, 1))
    return LoadedModel.from_manifest(tmp_path / "manifest.toml", device="cpu")


def test_the_input_of_a_slice_is_its_neighbours_and_itself_windowed(ct, tmp_path):
    model = _model(tmp_path)
    spec = model.manifest.input
    assert (spec.context, spec.neighbours, spec.slices) == ("adjacent-slices", 1, 3)
    x, _ = prepare_frame(ct, 14, spec, 3)
    for channel, frame in enumerate((13, 14, 15)):
        alone, _ = prepare_frame(ct, frame, replace(spec, context="slice", neighbours=0), 1)
        np.testing.assert_allclose(x[channel], alone[0], atol=1e-6)
    first, _ = prepare_frame(ct, 0, spec, 3)  # past the first slice, the first is repeated
    np.testing.assert_allclose(first[0], first[1])
    assert not torch.allclose(first[1], first[2])
    windowed = apply_window(ct.frame(14), Window(40, 80, "LINEAR_EXACT"))
    assert float(windowed.max()) == 1.0  # the brain window saturates bone: the channel is windowed


def test_a_slice_prediction_depends_on_its_neighbours_only(ct, tmp_path):
    model = _model(tmp_path)
    before = model.predict(ct).logits
    changed = replace(ct, pixels=ct.pixels.copy())
    changed.pixels[15] = changed.pixels[15][::-1]  # only slice 15 changes
    after = model.predict(changed).logits
    # Seeded random weights barely react to content: any change at all counts, none elsewhere.
    moved = np.flatnonzero(np.abs(after - before).max(axis=1) > 0)
    assert list(moved) == [14, 15, 16]
    for frame in range(ct.n_frames):
        same = torch.equal(model.prepare(ct, frame)[0], model.prepare(changed, frame)[0])
        assert same == (frame not in (14, 15, 16))


def test_maps_of_a_25d_model_are_on_the_centre_slice(ct, tmp_path):
    model = _model(tmp_path)
    result = explain(model, ct, ["gradcam", "guided-backprop"], targets=["subdural"], frames=[0, 14])
    for smap in result.maps:
        assert smap.frames == (0, 14) and smap.array.shape == (2, ct.rows, ct.columns)
        assert np.isfinite(smap.array).all() and smap.array.max() > 0


@pytest.mark.parametrize(
    ("inputs", "channels", "reason"),
    [
        (BRAIN, 4, "not a multiple of the 3 slices"),
        (BRAIN.replace("[[40, 80]]", "[[40, 80], [75, 215]]"), 3, "2 windows for 1 input channels per slice"),
        ('[input]\ncontext = "slices"\n', 3, "slice or adjacent-slices"),
        ('[input]\nneighbours = 2\n', 3, "with adjacent-slices"),
    ],
)  # fmt: skip
def test_inconsistent_2_5d_manifests_are_refused_by_name(tmp_path, inputs, channels, reason):
    with pytest.raises(ManifestError, match=reason):
        _model(tmp_path, inputs, channels)


def test_three_slices_of_three_windows_make_nine_channels(ct, tmp_path):
    inputs = '[input]\ncontext = "adjacent-slices"\nwindows = [[40, 80], [75, 215], [600, 2800]]\n'
    model = _model(tmp_path, inputs, channels=9)
    x, _ = model.prepare(ct, 14)
    assert x.shape[0] == 9 and load_manifest(tmp_path / "manifest.toml").input.neighbours == 1
    assert model.predict(ct, frames=[14]).probabilities.shape == (1, len(LABELS))


def test_the_model_doctor_says_how_a_25d_input_is_read(ct, tmp_path):
    from viewer.inference.doctor import check_model

    _model(tmp_path)
    report = check_model(tmp_path / "manifest.toml", ct, device="cpu")
    assert report.ok, report.error
    assert (
        "2.5-D: 3 adjacent slices (1 on each side), 1 channel(s) each, maps on the centre slice"
        in report.text()
    )
