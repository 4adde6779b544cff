"""Detectors assembled from torchvision's parts (``arch = "fcos:mobilenet_v3_small"``): the
network a notebook builds by hand loads from its ``state_dict()`` and detects the same boxes."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from tests.explain.detectors import fcos_detector, spread_statistics
from tests.inference.test_detection_models import write_manifest
from viewer.inference.detector_parts import DETECTOR_CLASSES
from viewer.inference.manifest import ManifestError, load_manifest
from viewer.inference.model import LoadedModel, build_network

pytestmark = pytest.mark.timeout(300)
SIZE = 128


def saved_like_a_notebook(net: nn.Module, folder) -> None:
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, folder / "w.safetensors")


def same_boxes(reference: nn.Module, loaded: LoadedModel, channels: int = 3) -> int:
    x = torch.rand(1, channels, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = reference(x)[0], loaded.network(x)[0]
    assert len(want["boxes"]) > 0, "degenerate case: no boxes to compare"
    for key in ("boxes", "labels", "scores"):
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-4)
    return len(want["boxes"])


def manifest_for(tmp_path, arch: str, kwargs: str = "", channels: int = 3):
    network = f"kwargs = {{ {kwargs} }}\n" if kwargs else ""
    return write_manifest(
        tmp_path, arch, network=network, channels=channels, extra="[detection]\nscore_threshold = 0.05\n"
    )


def test_torchvisions_tutorial_faster_rcnn_on_resnet18_loads_and_detects_the_same(tmp_path):
    # The body torchvision's resnet_fpn_backbone makes: FrozenBatchNorm2d (no step counter saved).
    torch.manual_seed(0)
    reference = FasterRCNN(
        resnet_fpn_backbone(backbone_name="resnet18", weights=None), num_classes=3,
        min_size=SIZE, max_size=SIZE, image_mean=[0.0] * 3, image_std=[1.0] * 3, box_score_thresh=0.0,
    )  # fmt: skip
    spread_statistics(reference, 5)
    saved_like_a_notebook(reference, tmp_path)
    path = manifest_for(tmp_path, "fasterrcnn:resnet18", "box_score_thresh = 0.0")
    loaded = LoadedModel.from_manifest(path)
    assert loaded.target_layer == "backbone.body.layer4"  # every level, and so every box, comes from it
    assert same_boxes(reference, loaded) > 10


def test_fcos_on_a_mobilenet_body_loads_and_detects_the_same(tmp_path):
    reference = fcos_detector(size=SIZE, channels=64)
    saved_like_a_notebook(reference, tmp_path)
    loaded = LoadedModel.from_manifest(
        manifest_for(tmp_path, "fcos:mobilenet_v3_small", "fpn_channels = 64, score_thresh = 0.05")
    )
    assert same_boxes(reference, loaded) > 10


def test_retinanet_with_its_own_strides_and_one_channel(tmp_path):
    """Strides other than torchvision's: the anchors follow the levels; a grey input's first
    convolution takes one channel."""
    kwargs = "strides = [16, 32], fpn_channels = 32, score_thresh = 0.0"
    path = manifest_for(tmp_path, "retinanet:resnet18", kwargs, channels=1)
    network = build_network(load_manifest(path))
    assert isinstance(network, RetinaNet) and network.backbone.body.conv1.in_channels == 1
    assert network.anchor_generator.sizes[0][0] == pytest.approx(64)  # 4 x stride 16, as at stride 8
    assert isinstance(network.backbone.fpn.extra_blocks, LastLevelP6P7)
    torch.manual_seed(0)
    saved_like_a_notebook(spread_statistics(network, 5), tmp_path)
    loaded = LoadedModel.from_manifest(path)
    assert same_boxes(network, loaded, channels=1) > 0


@pytest.mark.parametrize("cls", DETECTOR_CLASSES)
def test_every_class_on_a_features_body(tmp_path, cls):
    path = manifest_for(tmp_path, f"{cls}:mobilenet_v3_small", "fpn_channels = 32")
    network = build_network(load_manifest(path))
    with torch.no_grad():
        out = network.eval()(torch.rand(2, 3, SIZE, SIZE))
    assert len(out) == 2 and set(out[0]) == {"boxes", "labels", "scores"}
    assert network.backbone.out_channels == 32


@pytest.mark.parametrize(
    ("arch", "kwargs", "says"),
    [
        ("fcos:resnet_huge", "", "'resnet_huge' is no torchvision classification network"),
        ("fcos:mobilenet_v3_small", "strides = [8, 64]", "no block at output stride(s) [64]"),
        ("fcos:vit_b_16", "", "neither ResNet layers nor a features body"),
        ("retinanet:resnet18", 'backbone_kwargs = "x"', "backbone_kwargs must be a table"),
    ],
)
def test_a_wrong_part_is_named(tmp_path, arch, kwargs, says):
    with pytest.raises(ManifestError, match=re.escape(says)):
        build_network(load_manifest(manifest_for(tmp_path, arch, kwargs)))


def test_a_classifier_task_with_a_detector_class_is_refused(tmp_path):
    path = write_manifest(tmp_path, "fcos:resnet18", task="multilabel", channels=3)
    with pytest.raises(ManifestError, match='set task = "detection"'):
        build_network(load_manifest(path))


def test_the_detector_runs_through_the_viewer_on_a_film(tmp_path):
    """The whole path: a film's pixels, the viewer's pre-processing, boxes on the native grid."""
    from viewer.api.sources import open_image

    reference = fcos_detector(size=SIZE, channels=64)
    saved_like_a_notebook(reference, tmp_path)
    loaded = LoadedModel.from_manifest(
        manifest_for(tmp_path, "fcos:mobilenet_v3_small", "fpn_channels = 64, score_thresh = 0.05")
    )
    pixels = np.random.default_rng(0).random((300, 200)).astype(np.float32)
    prediction = loaded.predict(open_image(pixels))
    found = prediction.detections[0]
    assert len(found) > 0
    assert found.boxes[:, 2].max() <= 200 and found.boxes[:, 3].max() <= 300  # the film's own pixels


def test_finding_the_levels_leaves_the_body_as_it_was():
    import torchvision

    from viewer.inference.detector_parts import body_layers

    body = torchvision.models.mobilenet_v3_small(weights=None).features
    before = {k: v.clone() for k, v in body.state_dict().items()}
    levels, channels = body_layers(body, (8, 16, 32))
    assert levels == {"3": "0", "8": "1", "12": "2"} and channels == [24, 48, 576]
    assert body.training
    assert all(torch.equal(before[k], v) for k, v in body.state_dict().items())
