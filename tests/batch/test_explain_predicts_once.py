"""A batch explanation runs each film through the network once for its prediction and its maps
(issue 38): the engine's recorded forward gives the probabilities and the default target, which a
separate prediction pass gave before. What is written must not change: predictions.json equals
the code before within float rounding, and the separate prediction's probabilities and target."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from viewer.batch.explain_run import ExplainRequest, run_explain
from viewer.batch.explain_study import ExplainOptions
from viewer.cli import main
from viewer.inference.catalog import resolve_model
from viewer.inference.model import LoadedModel
from viewer.io import discover, load_series
from viewer.phantoms.studies import write_chest_set

SEED_SET = "gradcam,gradcam++,guided-backprop,guided-gradcam,deconvnet"
# predictions.json of `saliency-viewer explain` at commit 108607c (a git worktree of it) on these
# films, before the prediction pass was folded into the explanation's.
BEFORE = {
    "cxr_0001": {
        "nodule": 0.035531893372535706,
        "consolidation": 0.0016862056218087673,
        "effusion": 0.0013802048051729798,
        "cardiomegaly": 7.884411388658918e-06,
        "pneumothorax": 0.0015801687259227037,
    },
    "cxr_0002": {
        "nodule": 0.046077173203229904,
        "consolidation": 0.008138135075569153,
        "effusion": 0.9999997615814209,
        "cardiomegaly": 0.0005820700316689909,
        "pneumothorax": 0.0019770965445786715,
    },
}


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    data = tmp_path_factory.mktemp("films")
    write_chest_set(data, 2, seed=11, size=320)  # the films of tests/state/test_explain_maps_unchanged.py
    return data / "dicom"


@pytest.fixture(scope="module")
def model():
    return LoadedModel.from_manifest(resolve_model("cxr_resnet18"), "cpu")


def test_predictions_and_targets_are_those_of_a_separate_prediction_pass(films, model, tmp_path):
    out = tmp_path / "out"
    assert main(["explain", str(films), "--model", "cxr_resnet18", "--methods", SEED_SET, "--quiet",
                 "--previews", "none", "--out", str(out)]) == 0  # fmt: skip
    with open(out / "metrics.csv", newline="") as f:
        explained = {(row["image"], row["target"]) for row in csv.DictReader(f)}
    for name, before in BEFORE.items():
        written = json.loads((out / name / "predictions.json").read_text())["probability"]
        assert list(written) == list(before)
        np.testing.assert_allclose(list(written.values()), list(before.values()), rtol=1e-5, atol=1e-7)
        # The reference: the model's own prediction (no gradients, its own pass), as the session made.
        image = load_series(discover([films / f"{name}.dcm"]).series[0])
        prediction = model.predict(image)
        np.testing.assert_allclose(list(written.values()), prediction.probabilities[0], rtol=1e-5, atol=1e-7)
        assert {target for image, target in explained if image == name} == {prediction.default_target()}


def test_a_film_goes_through_the_network_once_for_its_prediction_and_its_maps(films, model, tmp_path):
    forwards = []
    hook = model.network.register_forward_pre_hook(lambda module, args: forwards.append(args[0].shape[0]))
    try:
        options = ExplainOptions(("gradcam", "gradcam++"), previews="none")
        outcome = run_explain(model, ExplainRequest([films], [], options, tmp_path / "out"))
    finally:
        hook.remove()
    assert outcome.studies == 2 and not outcome.problems
    assert forwards == [1, 1]  # one film a pass; two films; no pass of its own for the prediction
