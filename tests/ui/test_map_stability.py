"""Model > Stability of the maps... on the real window: the agreement and disagreement layers and
the Compare panel's "Stability (SSIM)" column hold what the Qt-free core computes."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import QInputDialog

from tests.ui.helpers import CHEST, open_and_wait, run_and_wait
from viewer.explain.engine import explain
from viewer.explain.metric_catalog import title_of_metric
from viewer.explain.registry import get_method
from viewer.explain.stability import agreement, pair_scores
from viewer.ui.comparison import COLUMNS


def test_the_menu_command_shows_both_layers_and_the_stability_column(qtbot, window, monkeypatch):
    open_and_wait(qtbot, window, [CHEST])
    run_and_wait(qtbot, window, ["gradient-shap"])
    window.session.explanation.methods = ["gradient-shap"]
    with qtbot.waitSignal(window.scores_shown, timeout=300_000):
        window.tabs.setCurrentWidget(window.comparison)
    # The menu's question (seeds besides the session's) answered "1", as a user would.
    monkeypatch.setattr(QInputDialog, "getInt", staticmethod(lambda *args, **kwargs: (1, True)))
    stability = window.session.stability
    with qtbot.waitSignal(window.scores_shown, timeout=300_000):
        window.actions_by_id["stability"].trigger()
        qtbot.waitUntil(lambda: not stability.running, timeout=300_000)
    assert not window.errors
    methods = [layer.method for layer in window.state.layers]
    assert {"gradient-shap:agreement", "gradient-shap:disagreement"} <= set(methods)
    # The Qt-free core on maps the engine makes here: seeds 0 and 1 of GradientSHAP.
    model = window.session.model.store.get(window.session.model.manifest_path)
    image, target = window.state.image, window.state.target
    maps = {
        f"seed {s}": explain(model, image, [get_method("gradient-shap")], targets=[target], seed=s)
        .maps[0]
        .frame(0)
        for s in (0, 1)
    }
    (expected,) = pair_scores(maps)
    result = stability.results()["gradient-shap"]
    assert result.ssim == pytest.approx(expected.ssim, abs=1e-3)
    mean, std = agreement(maps.values())
    shown = window.state.layer("gradient-shap:disagreement").map_for(0)
    np.testing.assert_allclose(shown.frame(0) * shown.scale, std, atol=1e-4)
    # The column, by its catalogue title, on the method's row; the derived layers are drawn but
    # not scored, so they have no row (issue 36: no pointing game or deletion of a statistic).
    panel = window.comparison
    column = [name for name, _ in COLUMNS].index(title_of_metric("stability_ssim"))
    by_method = {row[0]: row[column] for row in panel.table_rows()}
    assert by_method["GradientSHAP"] == f"{expected.ssim:.3f}"
    assert "GradientSHAP (agreement)" not in by_method and "GradientSHAP (disagreement)" not in by_method
    assert panel.views["gradient-shap:agreement"].title.text() == "GradientSHAP (agreement)"
    assert mean.max() <= 1.0
