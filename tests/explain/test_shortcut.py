"""The tool exposes a Clever-Hans model: on films with the burned-in marker, the shortcut-trained
model's maps land on the marker, while the honest model's maps land on the pneumothorax."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.explain import explain
from viewer.explain.localization import energy_inside, pointing_game
from viewer.inference.catalog import bundled_models
from viewer.inference.model import LoadedModel
from viewer.io import discover
from viewer.io.annotations import load_annotation
from viewer.io.loader import load_series
from viewer.phantoms.studies import write_chest_set

METHODS = ["gradcam", "guided-backprop", "guided-gradcam"]


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shortcut")
    records = write_chest_set(folder, 24, seed=9090, size=768, shortcut=True)
    models = {
        name: LoadedModel.from_manifest(bundled_models()[name])
        for name in ("cxr_resnet18", "cxr_shortcut_resnet18")
    }
    out = {name: {m: {"marker": [], "lesion": [], "energy": []} for m in METHODS} for name in models}
    for record in records:
        if not record.get("marker") or record["marker"]["text"] != "PORTABLE":
            continue
        image = load_series(discover([folder / record["path"]]).series[0])
        truth = load_annotation(folder / "annotations" / f"{record['name']}.json")
        marker, lesion = truth.marker_mask(image), truth.mask(image, "pneumothorax")
        for name, model in models.items():
            for smap in explain(model, image, METHODS, targets=["pneumothorax"]).maps:
                s = out[name][smap.method]
                s["marker"].append(pointing_game(smap.array, marker))
                s["energy"].append(energy_inside(smap.array, marker))
                if lesion.any():
                    s["lesion"].append(pointing_game(smap.array, lesion))
    return out


def rate(values) -> float:
    return float(np.mean([bool(v) for v in values]))


def test_enough_marked_films(scores):
    assert len(scores["cxr_resnet18"]["gradcam"]["marker"]) >= 5


@pytest.mark.parametrize("method", ["guided-backprop", "guided-gradcam"])
def test_shortcut_model_maps_point_at_the_marker_and_honest_ones_do_not(scores, method):
    shortcut = rate(scores["cxr_shortcut_resnet18"][method]["marker"])
    assert shortcut >= 0.8
    assert rate(scores["cxr_resnet18"][method]["marker"]) <= shortcut - 0.5


def test_gradcam_mass_moves_to_the_marker_and_away_from_the_lesion(scores):
    honest, shortcut = scores["cxr_resnet18"]["gradcam"], scores["cxr_shortcut_resnet18"]["gradcam"]
    assert np.mean(shortcut["energy"]) > 3 * np.mean(honest["energy"])
    assert rate(honest["lesion"]) >= 0.6
    assert rate(shortcut["lesion"]) < rate(honest["lesion"])
