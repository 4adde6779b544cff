"""Detection models (``task = "detection"``): torchvision's builders without downloads, one
output convention, boxes mapped back through the viewer's pre-processing onto native pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from viewer.inference.detection import (
    TORCHVISION_DETECTORS,
    Detections,
    as_detections,
    boxes_to_input,
    boxes_to_native,
    read_outputs,
)
from viewer.inference.manifest import InputSpec, ManifestError, load_manifest
from viewer.inference.model import LoadedModel, build_network
from viewer.inference.preprocess import geometry, resample
from viewer.io import discover
from viewer.io.loader import load_series
from viewer.resources import resource_path

pytestmark = pytest.mark.timeout(300)
LABELS = '["nodule", "effusion"]'
BUILDERS = [
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "retinanet_resnet50_fpn",
    "fcos_resnet50_fpn",
    "ssd300_vgg16",
    "ssdlite320_mobilenet_v3_large",
]


def write_manifest(
    folder, arch: str, *, extra: str = "", network: str = "", channels: int = 1, task="detection"
):
    (folder / "manifest.toml").write_text(
        f'name = "det"\ntask = "{task}"\nlabels = {LABELS}\n'
        f'[network]\narch = "{arch}"\nweights = "w.safetensors"\nin_channels = {channels}\n{network}'
        f'[input]\nsize = [128, 128]\nintensity = "voi"\n{extra}'
    )
    (folder / "w.safetensors").touch(exist_ok=True)  # load_manifest wants the file
    return folder / "manifest.toml"


def seeded_weights(manifest_path) -> torch.nn.Module:
    """Random, seeded weights for the manifest's own architecture, saved as safetensors."""
    torch.manual_seed(0)
    network = build_network(load_manifest(manifest_path))
    save_file(
        {k: v.contiguous() for k, v in network.state_dict().items()}, manifest_path.parent / "w.safetensors"
    )
    return network


@pytest.fixture(scope="module")
def film():
    return load_series(discover([resource_path("samples", "dicom", "cxr_0001.dcm")]).series[0])


@pytest.mark.parametrize("arch", BUILDERS)
def test_every_builder_builds_without_downloading(tmp_path, monkeypatch, arch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("a detector's builder tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    assert arch in TORCHVISION_DETECTORS
    network = build_network(load_manifest(write_manifest(tmp_path, arch, channels=3)))
    # Two labels and the background; no normalisation of its own (the viewer's input.mean/std is it).
    assert network.transform.image_mean == [0.0] * 3 and network.transform.image_std == [1.0] * 3
    with torch.no_grad():
        out = network.eval()(torch.rand(1, 3, 128, 128))
    assert set(out[0]) == {"boxes", "labels", "scores"}
    assert all(1 <= int(i) <= 2 for i in out[0]["labels"])


def test_a_detector_reads_the_native_image_and_its_boxes_come_back_in_native_pixels(tmp_path, film):
    path = write_manifest(
        tmp_path, "fasterrcnn_mobilenet_v3_large_320_fpn", extra="[detection]\nscore_threshold = 0.2\n"
    )
    network = seeded_weights(path).eval()
    model = LoadedModel.from_manifest(path, device="cpu")
    assert model.manifest.detection.score_threshold == 0.2
    assert model.head.activation == "identity"
    assert model.target_layer.startswith("backbone.body.")
    prediction = model.predict(film)
    found = prediction.detections[0]
    assert len(found) > 0
    # Independently: the same network on the same input, boxes mapped with the letterbox's numbers.
    x, _ = model.prepare(film, 0)
    with torch.no_grad():
        out = network(x[None])[0]
    scale = min(128 / film.rows, 128 / film.columns)
    new_h, new_w = round(film.rows * scale), round(film.columns * scale)
    top, left = (128 - new_h) // 2, (128 - new_w) // 2
    expected = out["boxes"].numpy().astype(np.float64)
    expected[:, 0::2] = ((expected[:, 0::2] - left) / (new_w / film.columns)).clip(0, film.columns)
    expected[:, 1::2] = ((expected[:, 1::2] - top) / (new_h / film.rows)).clip(0, film.rows)
    order = np.argsort(-out["scores"].numpy(), kind="stable")
    np.testing.assert_allclose(found.boxes, expected[order], atol=1e-3)
    assert found.labels == tuple(["nodule", "effusion"][i - 1] for i in out["labels"].numpy()[order])
    np.testing.assert_allclose(found.scores, out["scores"].numpy()[order], rtol=1e-6)
    best = {
        k: max([s for s, n in zip(found.scores, found.labels, strict=True) if n == k], default=0.0)
        for k in ("nodule", "effusion")
    }
    np.testing.assert_allclose(prediction.probabilities[0], [best["nodule"], best["effusion"]], rtol=1e-6)


@pytest.mark.parametrize(
    ("rows", "cols", "resize"), [(200, 100, "letterbox"), (90, 300, "stretch"), (150, 100, "center-crop")]
)
def test_a_box_drawn_on_the_input_grid_comes_back_on_the_right_native_pixels(rows, cols, resize):
    spec = InputSpec((128, 128), resize)
    transform = geometry(rows, cols, spec)
    native = np.zeros((rows, cols), np.float32)
    y0, y1, x0, x1 = rows // 4, rows // 2, cols // 3, cols // 3 + 40
    native[y0:y1, x0:x1] = 1.0
    seen = resample(native[None], transform)[0].numpy() > 0.5  # what the network sees of the finding
    ys, xs = np.nonzero(seen)
    drawn = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)  # its box, input pixels
    back = boxes_to_native(drawn, transform)[0]
    # Within one input pixel of the native box, whatever the scale.
    tolerance = np.array([1 / transform.scale_x, 1 / transform.scale_y] * 2)
    assert (np.abs(back - [x0, y0, x1, y1]) <= tolerance + 1e-4).all(), back
    np.testing.assert_allclose(boxes_to_input(back, transform), drawn, atol=1e-3)


def test_the_tensor_convention_of_onnx_and_pt2_detectors():
    boxes = torch.tensor([[1.0, 2.0, 10.0, 12.0], [5.0, 5.0, 30.0, 40.0]])
    scores, labels = torch.tensor([0.3, 0.9]), torch.tensor([2, 1])
    (one,) = read_outputs((boxes, scores, labels), 1)
    (batched,) = read_outputs((boxes[None], scores[None], labels[None]), 1)
    for output in (one, batched):
        found = as_detections(output, ("nodule", "effusion"))
        assert found.labels == ("nodule", "effusion")  # highest score first
        np.testing.assert_array_equal(found.boxes, boxes.numpy()[[1, 0]])
        assert found.above(0.5).labels == ("nodule",)
    with pytest.raises(ValueError, match="boxes \\(N, 4\\), scores \\(N,\\), labels \\(N,\\)"):
        read_outputs((boxes, scores, labels), 2)
    with pytest.raises(ValueError, match=r"label ids 1\.\.3 but the manifest lists 2 labels"):
        as_detections({"boxes": boxes, "scores": scores, "labels": torch.tensor([3, 1])}, ("a", "b"))
    with pytest.raises(ValueError, match="torchvision's list"):
        read_outputs(torch.zeros(1, 3), 1)
    assert Detections(np.zeros((0, 4), np.float32), (), np.zeros(0, np.float32)).records() == []


@pytest.mark.parametrize(
    ("arch", "task", "extra", "network", "reason"),
    [
        ("resnet18", "detection", "", "", "not a torchvision detector"),
        ("retinanet_resnet50_fpn", "multilabel", "", "", 'set task = "detection"'),
        ("retinanet_resnet50_fpn", "detection", "[detection]\nscore_threshold = 2\n", "", "score_threshold"),
        ("retinanet_resnet50_fpn", "detection", "[detection]\nmin_size = 0.5\n", "", "min_size"),
        ("retinanet_resnet50_fpn", "detection", "[detection]\nnms = 1\n", "", "unknown key"),
        ("resnet18", "multilabel", "[detection]\nscore_threshold = 0.3\n", "", "for task = detection"),
        ("retinanet_resnet50_fpn", "detection", "", 'kwargs = {weights_backbone = "DEFAULT"}\n', "download"),
    ],
)
def test_manifest_errors_name_the_key(tmp_path, arch, task, extra, network, reason):
    with pytest.raises(ManifestError, match=reason) as caught:
        build_network(load_manifest(write_manifest(tmp_path, arch, task=task, extra=extra, network=network)))
    assert str(tmp_path) in str(caught.value)
