"""viewer.explain as a notebook uses it: every kind of image, the user's module given back as it
was, targets, layers, errors a user can act on, the saved files, metrics, pictures."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image as PILImage
from torch import nn

import viewer
from tests.api.networks import chest_net, smooth_input
from viewer.resources import resource_path

pytestmark = pytest.mark.timeout(300)


def test_import_viewer_is_cheap():
    """``import viewer`` loads neither torch nor Qt; the API's names resolve on first use."""
    code = (
        "import sys, viewer; assert 'torch' not in sys.modules and 'PySide6' not in sys.modules; "
        "print(sorted(viewer.__all__)); viewer.explain; assert 'torch' in sys.modules; "
        "assert 'PySide6' not in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "explain" in out and "Explanation" in out and "NetworkError" in out
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = viewer.nothing


def test_explain_is_both_the_function_and_the_engine_package():
    """``viewer.explain`` names the public function and the engine's subpackage: importing the
    subpackage first (as the CLI and these tests do) must not hide the function."""
    code = (
        "from viewer.explain import engine; import viewer; import viewer.explain.registry; "
        "assert viewer.explain.engine is engine and callable(viewer.explain); print('ok')"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        == "ok\n"
    )


def hooks_of(net: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in net.modules()
    )  # fmt: skip


def test_module_given_back_as_it_was():
    net = chest_net()
    net.train()
    net.block.eval()  # a mixed state, as freezing BatchNorm while fine-tuning leaves it
    net.stem.weight.requires_grad_(False)
    net.fc2.weight.grad = torch.ones_like(net.fc2.weight)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modes = [m.training for m in net.modules()]
    viewer.explain(net, smooth_input(), ["gradcam", "guided-backprop", "smoothgrad"])
    assert [m.training for m in net.modules()] == modes
    assert not net.stem.weight.requires_grad and net.stem.bias.requires_grad
    assert torch.equal(net.fc2.weight.grad, torch.ones_like(net.fc2.weight))
    assert net.fc1.weight.grad is None
    assert hooks_of(net) == 0
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics too


def test_tensor_is_the_input_on_its_grid():
    net = chest_net()
    x = smooth_input(size=(40, 56))
    expl = viewer.explain(net, x[0], ["gradcam", "gradient"])  # (C, H, W) as well as (1, C, H, W)
    assert expl["gradcam"].shape == (40, 56) and expl["gradcam"].dtype == np.float32
    assert expl.labels == ("0", "1", "2", "3")
    with torch.no_grad():
        p = torch.softmax(net.eval()(x), dim=1)[0].tolist()
    assert list(expl.probabilities.values()) == pytest.approx(p, abs=1e-6)
    assert expl.targets == (str(int(np.argmax(p))),)
    again = viewer.explain(net, x.numpy(), ["gradcam"])  # a numpy array is read the same way
    np.testing.assert_array_equal(again["gradcam"], expl["gradcam"])


def test_target_by_index_or_label_and_several():
    net = chest_net()
    x = smooth_input()
    by_index = viewer.explain(net, x, "gradcam", target=2, labels=["a", "b", "c", "d"])
    by_label = viewer.explain(net, x, "gradcam", target="c", labels=["a", "b", "c", "d"])
    assert by_index.targets == by_label.targets == ("c",)
    np.testing.assert_array_equal(by_index["gradcam"], by_label["gradcam"])
    both = viewer.explain(net, x, "gradcam", target=[0, "c"], labels=["a", "b", "c", "d"])
    np.testing.assert_array_equal(both["gradcam", "c"], by_label["gradcam"])
    assert not np.array_equal(both["gradcam", "a"], both["gradcam", "c"])
    with pytest.raises(viewer.InputError, match="unknown target 'e'; the labels are a, b, c, d"):
        viewer.explain(net, x, "gradcam", target="e", labels=["a", "b", "c", "d"])
    with pytest.raises(viewer.InputError, match="target 7 is not an output index: the network has 4"):
        viewer.explain(net, x, "gradcam", target=7)


def test_layer_by_name_or_module():
    net = chest_net()
    x = smooth_input()
    by_name = viewer.explain(net, x, "gradcam", layer="block.0")
    by_module = viewer.explain(net, x, "gradcam", layer=net.block[0])
    default = viewer.explain(net, x, "gradcam")
    np.testing.assert_array_equal(by_name["gradcam"], by_module["gradcam"])
    assert not np.allclose(by_name["gradcam"], default["gradcam"])  # the default is "down"


def test_bad_layer_names_the_nearest():
    net = chest_net()
    with pytest.raises(viewer.NetworkError) as error:
        viewer.explain(net, smooth_input(), "gradcam", layer="blok.0")
    message = str(error.value)
    assert "layer 'blok.0' is not a module of ChestNet; nearest: block.0" in message
    assert "Traceback" not in message
    with pytest.raises(viewer.NetworkError, match="layer Linear is not a submodule of this network"):
        viewer.explain(net, smooth_input(), "gradcam", layer=nn.Linear(2, 2))


def test_errors_a_user_can_act_on(tmp_path):
    net = chest_net()
    with pytest.raises(viewer.InputError, match=r"unknown method.*gradcam, gradcam\+\+"):
        viewer.explain(net, smooth_input(), "grad-cam")
    with pytest.raises(viewer.NetworkError, match="does not run on an input of shape \\(1, 1, 48, 40\\)"):
        viewer.explain(net, smooth_input(channels=1), "gradcam")
    with pytest.raises(viewer.NetworkError, match="3 labels given, but ChestNet outputs 4 scores"):
        viewer.explain(net, smooth_input(), "gradcam", labels=["a", "b", "c"])
    with pytest.raises(viewer.InputError, match=f"{tmp_path / 'none.png'}: no such file"):
        viewer.explain(net, tmp_path / "none.png", "gradcam")
    with pytest.raises(viewer.InputError, match="cannot read an image from a dict"):
        viewer.explain(net, {"x": 1}, "gradcam")


def test_pil_and_numpy_pixels_agree():
    """A PIL image and its pixels as an array are the same image: same maps, on its own grid."""
    net = chest_net()
    pixels = (np.random.default_rng(0).random((60, 50, 3)) * 255).astype(np.uint8)
    settings = {"size": [48, 40], "resize": "stretch", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    from_pil = viewer.explain(net, PILImage.fromarray(pixels), "gradcam", preprocess=settings)
    from_array = viewer.explain(net, pixels, "gradcam", preprocess=viewer.InputSpec(
        size=(48, 40), resize="stretch", mean=(0.5,) * 3, std=(0.25,) * 3
    ))  # fmt: skip
    assert from_pil["gradcam"].shape == (60, 50)  # the image's grid, not the network's
    assert from_pil.grid("gradcam").shape == (48, 40)
    np.testing.assert_array_equal(from_pil["gradcam"], from_array["gradcam"])


def test_dicom_path_and_dataset_agree():
    net = chest_net(in_channels=1)
    path = resource_path("samples", "dicom", "cxr_0001.dcm")
    settings = {"size": [64, 64]}
    from_path = viewer.explain(net, path, ["gradcam", "gradient"], preprocess=settings)
    from_dataset = viewer.explain(net, pydicom.dcmread(path), ["gradcam", "gradient"], preprocess=settings)
    ds = pydicom.dcmread(path)
    assert from_path["gradcam"].shape == (ds.Rows, ds.Columns)
    for method in ("gradcam", "gradient"):
        np.testing.assert_array_equal(from_path[method], from_dataset[method])
    assert from_path.probabilities == from_dataset.probabilities


def test_list_of_images_gives_a_list():
    net = chest_net()
    images = [smooth_input(seed=1), smooth_input(seed=2)]
    results = viewer.explain(net, images, "gradcam")
    assert isinstance(results, list) and len(results) == 2
    np.testing.assert_array_equal(results[1]["gradcam"], viewer.explain(net, images[1], "gradcam")["gradcam"])


def test_metrics_against_an_annotation(tmp_path):
    net = chest_net()
    x = smooth_input()
    expl = viewer.explain(net, x, ["gradcam", "gradient"])
    peak = np.unravel_index(np.argmax(expl["gradcam"]), expl["gradcam"].shape)
    mask = np.zeros(expl["gradcam"].shape, bool)
    mask[max(0, peak[0] - 4) : peak[0] + 5, max(0, peak[1] - 4) : peak[1] + 5] = True
    scored = viewer.explain(net, x, ["gradcam", "gradient"], annotation=mask)
    rows = {row["method"]: row for row in scored.metrics}
    assert rows["gradcam"]["pointing_game"] is True
    saliency = scored["gradcam"]
    assert rows["gradcam"]["energy_inside"] == pytest.approx(saliency[mask].sum() / saliency.sum(), rel=1e-4)
    assert rows["gradcam"]["probability"] == scored.probabilities[scored.targets[0]]
    assert all(row["energy_inside"] is None for row in expl.metrics)  # nothing to score against
    frame = scored.to_dataframe()
    assert list(frame["method"]) == ["gradcam", "gradient"]


def test_save_writes_what_the_explain_command_writes(tmp_path):
    net = chest_net()
    x = smooth_input()
    mask = np.zeros(x.shape[-2:], bool)
    mask[10:30, 10:30] = True
    expl = viewer.explain(net, x, ["gradcam", "gradient"], labels=["a", "b", "c", "d"], annotation=mask)
    folder = expl.save(tmp_path / "study")
    assert sorted(p.name for p in folder.iterdir()) == [
        "gradcam.npy", "gradcam.png", "gradient.npy", "gradient.png", "metrics.csv", "predictions.json",
    ]  # fmt: skip
    np.testing.assert_array_equal(np.load(folder / "gradcam.npy"), expl["gradcam"])
    predictions = json.loads((folder / "predictions.json").read_text())
    assert predictions["model"] == "ChestNet"
    assert predictions["probability"] == pytest.approx(expl.probabilities)
    with (folder / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["gradcam", "gradient"]
    assert float(rows[0]["energy_in_mask"]) == pytest.approx(expl.metrics[0]["energy_inside"], abs=1e-4)
    with PILImage.open(folder / "gradcam.png") as png:
        assert png.size == (x.shape[-1], x.shape[-2])


def test_pictures_for_a_notebook():
    net = chest_net()
    x = smooth_input()
    mask = np.zeros(x.shape[-2:], bool)
    mask[10:30, 10:30] = True
    expl = viewer.explain(net, x, ["gradcam", "guided-backprop"], annotation=mask)
    png = expl._repr_png_()
    with PILImage.open(__import__("io").BytesIO(png)) as picture:
        assert picture.height == 256 and picture.width > 3 * 256 * x.shape[-1] / x.shape[-2] - 1
    page = expl._repr_html_()
    assert page.startswith('<div><img src="data:image/png;base64,') and "Grad-CAM" in page
    figure = expl.plot()
    assert len(figure.axes) == 3  # the image and two maps
    assert figure.axes[1].get_title().startswith("Grad-CAM: ")
    assert "energy" in figure.axes[1].get_title()
    assert "<Explanation ChestNet:" in repr(expl)
