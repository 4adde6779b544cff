"""The training recipe's evaluation (model-card numbers) agrees with the reference implementations."""

import numpy as np
import pytest
import torch
import torchvision
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from sklearn.metrics import roc_auc_score

from models.train import auroc, grad_cam


def test_auroc_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.random(300) < 0.3
    scores = np.round(rng.random(300) + 0.3 * labels, 1)  # rounded: many ties
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert np.isnan(auroc(np.zeros(5), np.arange(5.0)))


def test_grad_cam_matches_pytorch_grad_cam():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4).eval()
    x = torch.randn(2, 3, 96, 96)
    ours = grad_cam(model, model.layer4, x, label=2).numpy()
    with GradCAM(model=model, target_layers=[model.layer4]) as cam:
        theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(2)] * 2)
    for a, b in zip(ours, theirs, strict=True):
        # pytorch-grad-cam min-max normalises each map; compare shapes of the maps.
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99
        assert np.unravel_index(a.argmax(), a.shape) == np.unravel_index(b.argmax(), b.shape)
