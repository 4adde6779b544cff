"""The Compare tab's model without Qt: scores and mean agreement of the maps on screen, the
stability panel's derived layers left out, and the same agreement numbers as explain's metrics.csv."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest

from viewer.api.sources import array_image
from viewer.cli import main
from viewer.explain.comparison import agreement, mean_agreement
from viewer.io.formats.memory import memory_series
from viewer.io.series import Discovery
from viewer.resources import resource_path
from viewer.state.comparison import is_derived
from viewer.state.runner import InlineRunner
from viewer.state.session import ViewerSession

METHODS = ["gradcam", "gradient", "guided-backprop"]


@pytest.fixture
def session(chest_session):
    """A held chest network on a random 40 x 40 picture, three maps computed."""
    session = chest_session
    picture = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    session.opening.open_found(Discovery([memory_series(array_image(picture), "array")], []))
    session.run_methods(METHODS)
    return session


def test_mean_agreement_is_each_maps_mean_rho_with_the_others():
    rho = np.array([[1.0, 0.5, -0.1], [0.5, 1.0, 0.3], [-0.1, 0.3, 1.0]])
    assert mean_agreement(["a", "b", "c"], rho) == pytest.approx({"a": 0.2, "b": 0.4, "c": 0.1})
    assert mean_agreement(["a"], np.eye(1)) == {"a": None}  # nothing to agree with


def test_the_model_scores_every_map_and_their_agreement_and_says_when_done(session):
    said, scored = [], []
    session.comparison.status_changed.connect(said.append)
    session.comparison.scored.connect(lambda: scored.append(1))
    session.comparison.score(steps=0)
    compare = session.comparison
    assert sorted(compare.scores) == sorted(METHODS) and scored == [1] and not compare.dirty
    maps = [session.state.layer(m).map_for(0) for m in METHODS]
    names, rho, _ = agreement(maps, 0)
    assert compare.agreement == pytest.approx(mean_agreement(names, rho))
    assert said[-1].startswith(f"No annotation of '{session.state.target}'")


def test_derived_stability_layers_are_drawn_but_neither_scored_nor_compared(session):
    gradcam = session.state.layer("gradcam").map_for(0)
    session.layers.add(dataclasses.replace(gradcam, method="gradcam:agreement"))
    session.layers.add(dataclasses.replace(gradcam, method="gradcam:disagreement"))
    compare = session.comparison
    assert {layer.method for layer in compare.layers()} >= {"gradcam:agreement", "gradcam:disagreement"}
    assert [layer.method for layer in compare.scored_layers()] == [
        layer.method for layer in compare.layers() if layer.method in METHODS
    ]
    compare.score(steps=0)
    assert sorted(compare.scores) == sorted(compare.agreement) == sorted(METHODS)
    assert is_derived("gradcam:agreement") and not is_derived("gradcam") and not is_derived("agreement")


def test_the_window_and_explains_metrics_csv_give_the_same_agreement_on_the_same_film(tmp_path):
    film = resource_path("samples", "dicom", "cxr_0002.dcm")
    out = tmp_path / "out"
    argv = ["explain", str(film), "--model", "cxr_resnet18", "--methods", ",".join(METHODS)]
    assert main([*argv, "--steps", "0", "--quiet", "--out", str(out)]) == 0
    with open(out / "metrics.csv", newline="") as f:
        csv_rows = {row["method"]: row for row in csv.DictReader(f)}
    session = ViewerSession(InlineRunner())
    session.choose_model("cxr_resnet18")
    session.open_paths([film])
    session.run_methods(METHODS)
    session.comparison.score(steps=0)
    window = session.comparison.agreement
    assert {row["target"] for row in csv_rows.values()} == {session.state.target}
    for method in METHODS:
        assert window[method] is not None
        assert float(csv_rows[method]["agreement"]) == pytest.approx(window[method], abs=5e-5)


def test_evaluates_per_image_agreement_is_the_mean_agreement_of_the_same_maps(tmp_path):
    assert (
        main(["phantom", "cxr", "--n", "1", "--size", "384", "--seed", "4", "--out", str(tmp_path / "ph")])
        == 0
    )
    out = tmp_path / "eval"
    films, notes = tmp_path / "ph" / "dicom", tmp_path / "ph" / "annotations"
    argv = ["evaluate", str(films), "--model", "cxr_resnet18", "--annotation", str(notes),
            "--methods", ",".join(METHODS), "--bootstrap", "20"]  # fmt: skip
    assert main([*argv, "--quiet", "--out", str(out)]) == 0
    with open(out / "per_image.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["method"] in METHODS]
    assert rows
    from viewer.explain import explain
    from viewer.inference.catalog import bundled_models
    from viewer.inference.model import LoadedModel
    from viewer.io import discover
    from viewer.io.loader import load_series

    model = LoadedModel.from_manifest(bundled_models()["cxr_resnet18"])
    image = load_series(discover([tmp_path / "ph" / "dicom"]).series[0])
    for label in {r["label"] for r in rows}:
        maps = explain(model, image, METHODS, targets=[label]).maps
        names, rho, _ = agreement(maps, 0)
        expected = dict(zip(METHODS, mean_agreement(names, rho).values(), strict=True))
        for row in (r for r in rows if r["label"] == label):
            assert float(row["agreement"]) == pytest.approx(expected[row["method"]], abs=5e-5)  # 4 decimals
    with open(out / "summary.csv", newline="") as f:
        summary = {(r["label"], r["method"]): r for r in csv.DictReader(f)}
    for row in rows:
        assert summary[row["label"], row["method"]]["agreement"] != ""
