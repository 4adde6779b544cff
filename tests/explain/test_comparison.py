"""Per-map scores and map agreement (``viewer.explain.comparison``) with the bundled chest model on
the bundled sample studies: the same numbers as the metrics called directly, the right slice of a
series, and a cancel flag honoured."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from viewer.batch.explain_study import COLUMNS
from viewer.explain import Cancelled, ExplainContext, explain, get_method
from viewer.explain.comparison import MIN_SUBSTRATE_DROP, MapScores, agreement, score_map
from viewer.explain.faithfulness import causal_curves
from viewer.explain.localization import localization, pointing_game
from viewer.explain.similarity import spearman, ssim, unit_scaled
from viewer.inference.catalog import resolve_model
from viewer.inference.model import LoadedModel
from viewer.io import discover, load_series
from viewer.io.annotations import load_annotation
from viewer.resources import resource_path


class Flag:
    """A cancel flag that turns on at its ``after``-th look (0: set from the start)."""

    def __init__(self, after: int = 0):
        self.after, self.looks = after, 0

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks > self.after


@pytest.fixture(scope="module")
def model():
    return LoadedModel.from_manifest(resolve_model("cxr_resnet18"))


@pytest.fixture(scope="module")
def samples():
    found = discover([resource_path("samples", "dicom")])
    return {Path(s.paths[0]).stem: s for s in found.series}


@pytest.fixture(scope="module")
def chest(model, samples):
    image = load_series(samples["cxr_0001"])
    annotation = load_annotation(resource_path("samples", "annotations", "cxr_0001.json"))
    result = explain(
        model,
        image,
        ["gradcam", "guided-backprop", get_method("integrated-gradients", steps=4)],
        targets=["consolidation"],
    )
    return image, annotation, result


@pytest.fixture(scope="module")
def head_ct(model, samples):
    image = load_series(samples["CT0001"])
    annotation = load_annotation(resource_path("samples", "annotations", "ct_0001.json"))
    result = explain(model, image, ["gradcam"], frames=[10, 14])
    return image, annotation, result.maps[0]


def test_scores_equal_the_metrics_called_directly(model, chest):
    image, annotation, result = chest
    smap = result.get("gradcam")
    mask = annotation.mask(image, "consolidation")[0]
    marker = annotation.marker_mask(image)[0]
    scores = score_map(model, image, smap, 0, mask=mask, marker=marker, steps=5)

    expected = localization(smap.array[0], mask)
    assert scores.pointing_game is expected.pointing_game is True  # Grad-CAM's peak is in the consolidation
    for name in ("iou_otsu", "dice_otsu", "iou_top", "energy_inside", "auprc"):
        assert getattr(scores, name) == getattr(expected, name), name
    assert scores.pointing_game_marker == pointing_game(smap.array[0], marker)
    inputs = model.prepare(image, 0)[0][None].to(model.device)
    with ExplainContext(model.network, model.target_layer, inputs, task=model.manifest.task) as ctx:
        deletion, insertion = causal_curves(ctx, smap.grid[0], smap.target_index, steps=5)
    assert scores.deletion_auc == pytest.approx(deletion.auc, abs=1e-6)
    assert scores.insertion_auc == pytest.approx(insertion.auc, abs=1e-6)
    assert scores.deletion_auc < scores.insertion_auc
    assert (scores.method, scores.target, scores.frame, scores.seconds) == (
        "gradcam",
        "consolidation",
        0,
        smap.seconds,
    )
    assert scores.sanity_spearman is None and scores.sanity_verdict is None


def test_curves_the_blur_cannot_move_are_flagged(model, samples):
    """The model reads cardiomegaly on the sample film from the heart's outline, which RISE's blur
    keeps (p stays near 1 on the blurred image), so its deletion/insertion AUCs cannot rank maps and
    are flagged; effusion, whose evidence the blur removes, is not."""
    image = load_series(samples["cxr_0002"])
    result = explain(model, image, ["gradcam"], targets=["cardiomegaly", "effusion"])
    scores = {smap.target: score_map(model, image, smap, 0, steps=5) for smap in result.maps}
    heart, fluid = scores["cardiomegaly"], scores["effusion"]
    assert abs(heart.substrate_drop) < MIN_SUBSTRATE_DROP and heart.faithfulness_uninformative
    assert heart.deletion_auc > 0.9  # the probability never falls: every map would score alike
    assert fluid.substrate_drop > 0.5 and not fluid.faithfulness_uninformative
    assert heart.as_row()["substrate_drop"] == f"{heart.substrate_drop:.4f}"


def test_row_cells_are_the_cli_columns_formatted_as_metrics_csv():
    scores = MapScores(
        "gradcam", "nodule", 0, 1.23456, pointing_game=True, pointing_game_marker=False, iou_otsu=0.123456
    )
    row = scores.as_row()
    assert set(row) | {"image", "probability", "annotation_label", "agreement", "box"} == set(
        COLUMNS
    )  # the CLI adds those
    assert row["seconds"] == "1.235" and row["iou_otsu"] == "0.1235"
    assert row["pointing_game"] == "1" and row["pointing_game_marker"] == "0"
    assert (
        row["energy_in_mask"] == row["deletion_auc"] == row["substrate_drop"] == row["sanity_verdict"] == ""
    )
    assert not scores.faithfulness_uninformative  # no curves, nothing to flag


def test_a_map_equal_to_the_mask_localizes_perfectly_and_no_mask_gives_no_scores(model, chest):
    image, annotation, result = chest
    mask = annotation.mask(image, "consolidation")[0]
    perfect = replace(result.get("gradcam"), array=mask[None].astype(np.float32))
    scores = score_map(model, image, perfect, 0, mask=mask, steps=0)
    assert scores.pointing_game is True
    assert scores.iou_otsu == pytest.approx(1.0, abs=1e-3)
    assert scores.iou_top == pytest.approx(1.0) and scores.dice_otsu == pytest.approx(1.0, abs=1e-3)
    assert scores.energy_inside == pytest.approx(1.0) and scores.auprc == pytest.approx(1.0)
    assert scores.deletion_auc is None  # steps=0: no deletion/insertion

    empty = score_map(model, image, perfect, 0, mask=np.zeros_like(mask), steps=0)
    assert empty == MapScores("gradcam", "consolidation", 0, perfect.seconds)
    assert empty.as_row()["pointing_game"] == empty.as_row()["iou_otsu"] == ""


def test_sanity_check_on_request(model, chest):
    image, _, result = chest
    # Guided Backprop's "insensitive" verdict is checked through the CLI (tests/test_cli_explain.py).
    cam = score_map(model, image, result.get("gradcam"), 0, steps=0, sanity=True)
    assert cam.sanity_verdict == "model-sensitive" and cam.sanity_spearman < 0.5
    assert cam.as_row()["sanity_verdict"] == "model-sensitive"


def test_agreement_is_symmetric_with_unit_diagonal(chest):
    result = chest[2]
    labels, rho, structural = agreement(result.maps, 0)
    assert labels == ["gradcam", "guided-backprop", "integrated-gradients"]
    for matrix in (rho, structural):
        assert matrix.shape == (3, 3)
        np.testing.assert_array_equal(np.diag(matrix), 1.0)
        np.testing.assert_array_equal(matrix, matrix.T)
        assert np.all(np.abs(matrix) <= 1 + 1e-9)
    # Integrated Gradients is signed: compared by magnitude on the model grid.
    cam, ig = result.get("gradcam").grid[0], unit_scaled(np.abs(result.get("integrated-gradients").grid[0]))
    assert rho[0, 2] == pytest.approx(spearman(unit_scaled(cam), ig))
    assert structural[0, 2] == pytest.approx(ssim(unit_scaled(cam), ig))

    other = replace(result.get("gradcam"), target="nodule")
    assert agreement([result.get("gradcam"), other], 0)[0] == ["gradcam (consolidation)", "gradcam (nodule)"]
    assert agreement([], 0)[0] == []


def test_a_set_cancel_flag_stops_the_scoring(model, chest):
    image, annotation, result = chest
    smap, mask = result.get("gradcam"), annotation.mask(image, "consolidation")[0]
    with pytest.raises(Cancelled):
        score_map(model, image, smap, 0, mask=mask, steps=10, cancel=Flag())
    # Set while deletion/insertion runs (after its first batch): it stops there, sanity never starts.
    stages = []
    with pytest.raises(Cancelled):
        score_map(
            model,
            image,
            smap,
            0,
            steps=10,
            sanity=True,
            cancel=Flag(after=3),
            on_progress=lambda stage, _: stages.append(stage),
        )
    assert stages and set(stages) == {"deletion/insertion"}


def test_a_series_is_scored_on_the_asked_slice(model, head_ct):
    image, annotation, smap = head_ct
    assert smap.frames == (10, 14)
    volume = annotation.mask(image, "intraparenchymal")[[10, 14]]
    scores = score_map(model, image, smap, 14, mask=volume[1], steps=2)
    assert scores.frame == 14
    assert scores.iou_otsu == localization(smap.array[1], volume[1]).iou_otsu
    assert scores.auprc == localization(smap.array[1], volume[1]).auprc
    inputs = model.prepare(image, 14)[0][None].to(model.device)
    with ExplainContext(model.network, model.target_layer, inputs, task=model.manifest.task) as ctx:
        deletion, _ = causal_curves(ctx, smap.grid[1], smap.target_index, steps=2)
    assert scores.deletion_auc == pytest.approx(deletion.auc, abs=1e-6)
    other = score_map(model, image, smap, 10, mask=volume[0], steps=0)
    assert other.frame == 10 and other.auprc == localization(smap.array[0], volume[0]).auprc
    assert other.auprc != scores.auprc

    # A mask over every frame of the map scores the volume (the CLI's row per series).
    whole = score_map(model, image, smap, 14, mask=volume, steps=0)
    assert whole.auprc == localization(smap.array, volume).auprc
    with pytest.raises(ValueError, match="covers frames"):
        score_map(model, image, smap, 3, steps=0)
    with pytest.raises(ValueError, match="fits neither"):
        score_map(model, image, smap, 14, mask=volume[1, :100], steps=0)
