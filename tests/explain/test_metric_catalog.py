"""One name per score: every score the program computes is in the metric catalogue, and every
file and table names it through the catalogue."""

from __future__ import annotations

import dataclasses

import pytest

from viewer.batch.explain_study import COLUMNS as METRIC_COLUMNS
from viewer.explain.comparison import MapScores
from viewer.explain.evaluation import PER_IMAGE, map_scores
from viewer.explain.localization import LocalizationScores
from viewer.explain.metric_catalog import FILES, METRICS, column_of, metric, title_of_metric


def test_every_score_of_a_map_has_one_catalogue_entry():
    scores = {f.name for f in dataclasses.fields(MapScores)} - {"method", "target", "frame"}
    assert scores <= set(METRICS)
    local = {f.name for f in dataclasses.fields(LocalizationScores)} - {"top_fraction", "tolerance"}
    assert local <= set(METRICS)


def test_metrics_csv_columns_are_the_catalogues():
    row = MapScores("gradcam", "effusion", 0, 0.5, pointing_game=True, energy_inside=0.25).as_row()
    assert row["energy_in_mask"] == "0.2500" and row["pointing_game"] == "1"
    scored = [c for c in row if c not in ("method", "target")]
    assert scored == [c for c in METRIC_COLUMNS if c in scored]  # the CLI writes the same columns
    by_column = {column_of(m, "metrics.csv"): m for m in METRICS}
    assert set(scored) <= set(by_column)


def test_evaluates_columns_are_the_catalogues():
    import numpy as np

    from viewer.explain.evaluation import Truth

    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    saliency = np.zeros((16, 16), np.float32)
    saliency[5, 5] = 1.0
    scores = map_scores(saliency, Truth("effusion", mask))
    by_column = {column_of(m, "evaluate"): m for m in METRICS}
    for column in scores.keys() - {"iou_by_threshold"}:
        assert column in PER_IMAGE and column in by_column
    assert scores["hit"] == 1.0 and by_column["hit"] == "pointing_game_strict"
    assert scores["energy"] == 1.0 and by_column["energy"] == "energy_inside"


def test_one_title_per_score_and_errors_name_what_exists():
    titles = [m.title for m in METRICS.values()]
    assert len(titles) == len(set(titles))
    assert title_of_metric("energy_inside") == "Energy in annotation"
    with pytest.raises(KeyError, match="known: pointing_game"):
        metric("energy")
    with pytest.raises(ValueError, match="known: " + ", ".join(FILES)):
        column_of("auprc", "report.html")
