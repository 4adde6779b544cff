"""Detectors assembled from torchvision's parts: a detector class on a classification backbone.

``arch = "fcos:mobilenet_v3_small"`` builds what a notebook writes as

    body = BackboneWithFPN(mobilenet_v3_small(weights=None).features, ...)
    FCOS(body, num_classes=len(labels) + 1)

and ``"fasterrcnn:resnet18"`` what torchvision's tutorial writes as
``FasterRCNN(resnet_fpn_backbone(backbone_name="resnet18", weights=None), ...)``: the way most
detectors trained on chest X-ray data sets are built when the builders' ResNet-50 is too large.
The family is the detector class (``fasterrcnn``, ``retinanet``, ``fcos``), the name a torchvision
classification network whose body feeds a feature pyramid (FPN), with the state-dict keys
torchvision's own builders give (``backbone.body.*``, ``backbone.fpn.*``, the heads'), so such a
model's ``state_dict()`` saved as safetensors loads as it is. Only torchvision's classes are
instantiated, with numbers and names from the manifest: nothing from the weights file runs.

The pyramid reads the body at the output strides ``strides`` (``network.kwargs``; default: 4, 8,
16 and 32 for Faster R-CNN, 8, 16 and 32 for RetinaNet and FCOS, as torchvision's ResNet
builders): a ResNet's ``layer1``..``layer4``, or, in a network whose body is ``features`` (MobileNet,
EfficientNet, ConvNeXt, VGG), the last block at each stride. ``fpn_channels`` (default 256) sets
the pyramid's width, ``backbone_kwargs`` the classification builder's own arguments (e.g.
``width_mult``); every other key goes to the detector class (``score_thresh``, ``nms_thresh``,
``detections_per_img``...). Faster R-CNN adds a max-pooled level, RetinaNet and FCOS two strided
ones (P6, P7), as torchvision does; the anchors are torchvision's when the level count is theirs,
else scaled from each level's stride the way theirs are.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from viewer.inference.built import set_input_channels
from viewer.inference.detection import detector_kwargs
from viewer.inference.manifest import ManifestError, ModelManifest


def _fasterrcnn_anchors(strides: list[int]) -> AnchorGenerator:
    # torchvision's: 32 px at stride 4 (8 x the stride), three aspect ratios, one more pooled level.
    sizes = tuple((8 * s,) for s in [*strides, 2 * strides[-1]])
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))


def _retinanet_anchors(strides: list[int]) -> AnchorGenerator:
    # torchvision's: 32 px at stride 8 (4 x the stride) in three octave scales, three ratios, P6, P7.
    levels = [*strides, 2 * strides[-1], 4 * strides[-1]]
    sizes = tuple(tuple(4 * s * 2 ** (k / 3) for k in range(3)) for s in levels)
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))


def _fcos_anchors(strides: list[int]) -> AnchorGenerator:
    # torchvision's: one point per location, "size" the level's stride, P6 and P7 above.
    levels = [*strides, 2 * strides[-1], 4 * strides[-1]]
    return AnchorGenerator(tuple((s,) for s in levels), ((1.0,),) * len(levels))


# class, default strides, the pyramid's extra levels (from its width), anchors for other strides
_CLASSES: dict[str, tuple[type[nn.Module], tuple[int, ...], Callable, Callable]] = {
    "fasterrcnn": (FasterRCNN, (4, 8, 16, 32), lambda c: LastLevelMaxPool(), _fasterrcnn_anchors),
    "retinanet": (RetinaNet, (8, 16, 32), lambda c: LastLevelP6P7(c, c), _retinanet_anchors),
    "fcos": (FCOS, (8, 16, 32), lambda c: LastLevelP6P7(c, c), _fcos_anchors),
}
DETECTOR_CLASSES = tuple(_CLASSES)
_PROBE = 256  # pixels: a square probe to find each block's output stride


def body_layers(body: nn.Module, strides: tuple[int, ...]) -> tuple[dict[str, str], list[int]]:
    """``({child name: level name}, channels)`` of the last child of ``body`` at each stride."""
    x = torch.zeros(1, 3, _PROBE, _PROBE)
    last: dict[int, tuple[str, int]] = {}
    training = body.training
    body.eval()  # the probe leaves BatchNorm's running statistics as they were
    with torch.no_grad():
        for name, child in body.named_children():
            if isinstance(child, nn.Linear | nn.AdaptiveAvgPool2d | nn.Flatten | nn.Dropout):
                break  # the classifier's head: no grid beyond it
            x = child(x)
            if x.ndim == 4 and x.shape[-1] > 1:
                last[_PROBE // x.shape[-1]] = (name, x.shape[1])
    body.train(training)
    missing = [s for s in strides if s not in last]
    if missing:
        raise ValueError(
            f"its body has no block at output stride(s) {missing} (it has {sorted(last)}); "
            "set network.kwargs.strides"
        )
    return {last[s][0]: str(i) for i, s in enumerate(strides)}, [last[s][1] for s in strides]


def _body(name: str, backbone_kwargs: dict) -> nn.Module:
    """The classification network's convolutional body: a ResNet itself (the pyramid's layer
    getter stops at its last level, as torchvision's does) or another network's ``features``."""
    network = torchvision.models.get_model(name, weights=None, **backbone_kwargs)
    if hasattr(network, "layer4"):  # ResNet, ResNeXt, Wide ResNet
        return network
    features = getattr(network, "features", None)
    if not isinstance(features, nn.Sequential):
        raise ValueError(f"{name} has neither ResNet layers nor a features body to feed a pyramid")
    return features


def build_detector(manifest: ModelManifest, cls_name: str, backbone: str) -> nn.Module:
    """The detector ``cls_name`` (``fasterrcnn``, ``retinanet``, ``fcos``) on ``backbone``."""
    arch = f"network.arch {manifest.arch!r}"
    if backbone not in torchvision.models.list_models(module=torchvision.models):
        raise ManifestError(manifest.path, f"{arch}: {backbone!r} is no torchvision classification network")
    if manifest.task != "detection":
        raise ManifestError(manifest.path, f'{arch} is a detector: set task = "detection"')
    cls, default_strides, extra, anchors = _CLASSES[cls_name]
    kwargs = dict(manifest.arch_kwargs)
    strides = tuple(int(s) for s in kwargs.pop("strides", default_strides))
    width = int(kwargs.pop("fpn_channels", 256))
    backbone_kwargs = kwargs.pop("backbone_kwargs", {})
    if not isinstance(backbone_kwargs, dict):
        raise ManifestError(manifest.path, "network.kwargs.backbone_kwargs must be a table")
    body = _body(backbone, backbone_kwargs)
    return_layers, in_channels = body_layers(body, strides)
    if manifest.in_channels != 3:
        set_input_channels(body, manifest.in_channels)
    pyramid = BackboneWithFPN(body, return_layers, in_channels, width, extra_blocks=extra(width))
    if strides != default_strides:
        key = "rpn_anchor_generator" if cls is FasterRCNN else "anchor_generator"
        kwargs.setdefault(key, anchors(list(strides)))
    return cls(pyramid, **{**detector_kwargs(manifest), **kwargs})


__all__ = ["DETECTOR_CLASSES", "body_layers", "build_detector"]
