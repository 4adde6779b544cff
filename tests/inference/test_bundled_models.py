"""The bundled demo models: they load from their manifests, and they do what their cards claim on
fresh phantoms generated with a seed that neither training nor the recipe's evaluation used."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.train import auroc
from viewer.inference import LoadedModel
from viewer.inference.preprocess import prepare_array
from viewer.io import discover, load_series
from viewer.phantoms.chest import CHEST_LABELS, _burn_marker, render_chest
from viewer.phantoms.head_ct import render_head_ct
from viewer.resources import resource_path

MODELS = Path(__file__).resolve().parents[2] / "models"
FRESH_SEED = 424242


def _model(name: str) -> LoadedModel:
    return LoadedModel.from_manifest(MODELS / name, device="cpu")


def _predict_arrays(model: LoadedModel, frames: list[np.ndarray]) -> np.ndarray:
    spec, channels = model.manifest.input, model.manifest.in_channels
    inputs = torch.stack([prepare_array(f.astype(np.float32), spec, channels) for f in frames])
    with torch.inference_mode():
        return torch.sigmoid(model.network(inputs)).numpy()


@pytest.mark.parametrize("name", ["cxr_resnet18", "cxr_shortcut_resnet18", "ct_resnet18"])
def test_manifest_loads_and_weights_are_small(name):
    model = _model(name)
    assert model.target_layer == "layer4"
    assert model.manifest.weights.stat().st_size < 30e6
    assert "not for clinical use" in model.manifest.card.read_text().lower()


def test_chest_model_on_bundled_samples():
    model = _model("cxr_resnet18")
    truth = {"cxr_0001.dcm": {"nodule", "consolidation"}, "cxr_0002.dcm": {"effusion", "cardiomegaly"}}
    probabilities = {}
    for sample in truth:
        image = load_series(discover([resource_path("samples", "dicom", sample)]).series[0])
        probabilities[sample] = dict(
            zip(model.manifest.labels, model.predict(image).probabilities[0], strict=True)
        )
    for sample, present in truth.items():
        for label in ("consolidation", "effusion", "cardiomegaly", "pneumothorax"):
            assert (probabilities[sample][label] > 0.5) == (label in present), (sample, label)
    # Nodule is the weak label (card AUROC below 0.9): it must still rank the film with a nodule higher.
    assert probabilities["cxr_0001.dcm"]["nodule"] > probabilities["cxr_0002.dcm"]["nodule"]


def test_chest_model_matches_its_card_on_fresh_phantoms():
    model = _model("cxr_resnet18")
    card = json.loads((MODELS / "cxr_resnet18" / "metrics.json").read_text())["auroc"]
    cases = [render_chest(FRESH_SEED + i, 256) for i in range(80)]
    scores = _predict_arrays(model, [c.image for c in cases])
    for i, label in enumerate(CHEST_LABELS):
        truth = np.array([c.labels[label] for c in cases])
        # 80 fresh cases: allow for sampling noise around the card's figure (400 cases), never chance.
        assert auroc(truth, scores[:, i]) >= max(0.6, card[label] - 0.12), label


def test_ct_model_finds_bleeds_in_a_fresh_series():
    model = _model("ct_resnet18")
    scores, truth = [], []
    for i in range(6):
        case = render_head_ct(FRESH_SEED + i, 256, slices=28, prevalence=0.4)
        scores.append(_predict_arrays(model, list(case.hu))[:, 0])
        truth.append(case.slice_labels[:, 0])
    assert auroc(np.concatenate(truth), np.concatenate(scores)) >= 0.85


def test_shortcut_model_reads_the_marker_and_the_honest_one_does_not():
    honest, shortcut = _model("cxr_resnet18"), _model("cxr_shortcut_resnet18")
    ptx = CHEST_LABELS.index("pneumothorax")
    plain, marked = [], []
    for i in range(24):
        case = render_chest(FRESH_SEED + i, 256, findings={}, marker_probability=0.0)
        plain.append(case.image.copy())
        _burn_marker(case.image, "PORTABLE", np.random.default_rng(i), case.pixel_mm)
        marked.append(case.image)
    lift_shortcut = (
        _predict_arrays(shortcut, marked)[:, ptx].mean() - _predict_arrays(shortcut, plain)[:, ptx].mean()
    )
    lift_honest = (
        _predict_arrays(honest, marked)[:, ptx].mean() - _predict_arrays(honest, plain)[:, ptx].mean()
    )
    assert lift_shortcut > 0.3
    assert lift_honest < 0.1
