"""Maps of a detector's box: its score is pytorch-grad-cam's ``FasterRCNNBoxScoreTarget``.

Checked against the peers on the same seeded detectors (torchvision's Faster R-CNN MobileNetV3 FPN
builder, and FCOS on a MobileNetV3-Small body assembled from torchvision's parts; weights from
``torch.manual_seed``) and input: pytorch-grad-cam with ``FasterRCNNBoxScoreTarget`` on the same
target layer (its detection tutorial explains torchvision's Faster R-CNN in eval mode, gradients
through the RoI heads), and Captum with a forward that scores each input by that same target.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import Saliency
from pytorch_grad_cam import GradCAM, HiResCAM
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

from tests.explain.detectors import FCOS_LAYER, LAYER, SIZE, detector, fcos_detector
from tests.explain.peers import random_input
from viewer.explain import ExplainContext, get_method
from viewer.explain.box_targets import BOX_SCORE, PREFIX, BoxScores, BoxTarget, box_score

pytestmark = pytest.mark.timeout(300)


DETECTORS = {"faster_rcnn": (detector, LAYER), "fcos": (fcos_detector, FCOS_LAYER)}


@pytest.fixture(scope="module", params=sorted(DETECTORS))
def case(request):
    """The detector, an input, its own top box (as pytorch-grad-cam's tutorial explains the
    boxes the model found) and the target layer."""
    make, layer = DETECTORS[request.param]
    net = make()
    x = random_input(seed=3, size=SIZE, channels=3)
    with torch.no_grad():
        out = net(x)[0]
    assert len(out["boxes"]) > 0
    return net, x, out["boxes"][0].clone(), int(out["labels"][0]), layer


def ours(case, method_id: str) -> torch.Tensor:
    net, x, box, label, layer = case
    target = BoxTarget(tuple(box.tolist()), label)
    with ExplainContext(BoxScores(net, [target]), PREFIX + layer, x, task="detection", head=BOX_SCORE) as ctx:
        return get_method(method_id).compute(ctx, [0])[0].detach()


def peer_target(case) -> FasterRCNNBoxScoreTarget:
    _, _, box, label, _ = case
    return FasterRCNNBoxScoreTarget(labels=[label], bounding_boxes=[box.numpy()], iou_threshold=0.5)


def upsampled_unit(raw: torch.Tensor) -> np.ndarray:
    up = F.interpolate(raw.clamp(min=0)[:, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    up = up[:, 0] - up.amin()
    return (up / up.amax().clamp(min=1e-12)).numpy()


def assert_close(a, b, tol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.abs(b).max(), 1e-12)
    assert np.abs(a - b).max() <= tol * scale, f"max diff {np.abs(a - b).max() / scale:.2e} of peak"


def test_the_box_score_is_faster_rcnn_box_score_target(case):
    net, x, box, label, _ = case
    with torch.no_grad():
        out = net(x)[0]
        expected = float(peer_target(case)(out))
        mine = BoxScores(net, [BoxTarget(tuple(box.tolist()), label)])(x)
    assert expected > 1.0  # the box matches itself: IoU 1 plus its score
    assert float(mine[0, 0]) == pytest.approx(expected, rel=1e-6)
    # Another label, or a box far from every detection, scores 0 (pytorch-grad-cam's rule).
    other = 1 if label == 2 else 2
    assert float(box_score(out, BoxTarget(tuple(box.tolist()), other))) == float(
        FasterRCNNBoxScoreTarget([other], [box.numpy()])(out)
    )


@pytest.mark.parametrize(("method_id", "peer"), [("gradcam", GradCAM), ("hirescam", HiResCAM)])
def test_cam_of_a_box_equals_pytorch_grad_cam(case, method_id, peer):
    net, x, _, _, layer = case
    with peer(model=net, target_layers=[net.get_submodule(layer)]) as cam:
        expected = cam(input_tensor=x, targets=[peer_target(case)])
    assert expected.max() > 0, "degenerate test case: empty map"
    assert_close(upsampled_unit(ours(case, method_id)), expected, tol=2e-3)  # OpenCV resizes in float32


def test_gradient_of_a_box_equals_captum_saliency(case):
    net, x, _, _, _ = case
    target = peer_target(case)

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        return torch.stack([target(o) for o in net(inputs)]).reshape(len(inputs), 1)

    expected = Saliency(forward).attribute(x.clone(), target=0, abs=True).detach().amax(dim=1)
    assert float(expected.max()) > 0
    assert_close(ours(case, "gradient"), expected, tol=1e-4)
