"""docs/extending.md's four recipes, taken from the page alone and used as a user would: the toy
method explains the bundled chest model, the toy format opens a file in the window's discovery,
the toy family builds a model from a manifest, and the toy panel shows in the window. Every
registration is undone afterwards, so the rest of the suite sees the registries as shipped."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings
from safetensors.torch import save_file

from viewer.explain import registry
from viewer.inference import architectures
from viewer.io import formats
from viewer.ui import panels

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "extending.md"
_RECIPE = re.compile(r"<!-- recipe: (\w+) -->\n```python\n(.*?)```", re.S)


def recipes() -> dict[str, str]:
    found = dict(_RECIPE.findall(PAGE.read_text()))
    assert set(found) == {"method", "format", "family", "panel"}, found.keys()
    return found


def manifest_text() -> str:
    """The manifest the page shows for the family, as written there."""
    block = re.search(r"A manifest then names it.*?```text\n(.*?)```", PAGE.read_text(), re.S)
    return block.group(1)


@pytest.fixture
def recipe_namespace():
    """Run every recipe; undo their registrations afterwards."""
    methods, families, readers, panels_before = (
        dict(registry.METHODS), dict(architectures.FAMILIES), formats.READERS, dict(panels.PANELS)
    )  # fmt: skip
    module = types.ModuleType("docs_recipes")  # as a user's own module (dataclasses look it up)
    sys.modules[module.__name__] = module
    try:
        for name, code in recipes().items():
            exec(compile(code, f"docs/extending.md recipe {name}", "exec"), module.__dict__)
        yield module.__dict__
    finally:
        del sys.modules[module.__name__]
        for table, before in (
            (registry.METHODS, methods),
            (architectures.FAMILIES, families),
            (panels.PANELS, panels_before),
        ):
            table.clear()
            table.update(before)
        formats.READERS = readers


def test_the_recipes_add_a_method_a_format_a_family_and_a_panel(recipe_namespace, tmp_path, qtbot):
    from viewer.explain.engine import explain
    from viewer.inference.catalog import bundled_models
    from viewer.inference.model import LoadedModel
    from viewer.io.discovery import discover
    from viewer.io.loader import load_series
    from viewer.resources import resource_path
    from viewer.ui.main_window import MainWindow

    # The method explains the bundled chest model, and the docs' methods table would list it.
    chest = LoadedModel.from_manifest(bundled_models()["cxr_resnet18"], device="cpu")
    film = load_series(discover([resource_path("samples", "dicom", "cxr_0001.dcm")]).series[0])
    result = explain(chest, film, ["gradient-x-input"])
    smap = result.maps[0]
    assert smap.method == "gradient-x-input" and smap.convention == "signed"
    assert smap.array.shape[-2:] == (film.rows, film.columns)
    assert smap.grid.min() < 0 < smap.grid.max() <= 1  # signed: evidence for and against
    assert registry.METHODS["gradient-x-input"].family is registry.Family.GRADIENT

    # The format: a .npy file is found and opened; a pickled object array is refused by name.
    picture = np.outer(np.hanning(40), np.hanning(50)).astype(np.float32)
    np.save(tmp_path / "film.npy", picture)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    found = discover([tmp_path])
    assert [s.kind for s in found.series] == ["npy"]
    assert [Path(p.path).name for p in found.problems] == ["objects.npy"]
    image = load_series(found.series[0])
    assert image.pixels.shape == (1, 40, 50) and np.allclose(image.pixels[0], picture)

    # The family builds the page's manifest; the viewer loads its weights and predicts.
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "manifest.toml").write_text(manifest_text())
    network = architectures.FAMILIES["tiny"](_Labels(), "narrow").network
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, folder / "tiny.safetensors")
    tiny = LoadedModel.from_manifest(folder / "manifest.toml", device="cpu")
    assert tiny.family == "tiny" and tiny.target_layer == "2"
    for name, weights in network.state_dict().items():
        assert torch.equal(tiny.network.state_dict()[name], weights)
    prediction = tiny.predict(film)
    assert prediction.probabilities.shape == (1, 2)
    assert explain(tiny, film, ["gradcam"]).maps[0].method == "gradcam"

    # The panel shows in the window, in its own dock with a View menu toggle, and follows the session.
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings)
    qtbot.addWidget(window)
    dock = window.docks["top-finding"]
    assert dock.windowTitle() == "Top finding" and dock.toggleViewAction() in window.menus["view"].actions()
    label = dock.widget()
    assert label.text() == "No prediction yet"
    window.session.model.predicted.emit(prediction)
    assert re.fullmatch(r"Top finding: (effusion|nodule) \(\d\.\d\d\)", label.text())
    window.pacs_runner.shutdown()
    window.runner.shutdown()


class _Labels:
    """What the page's builder reads of a manifest, for building the weights the test saves."""

    in_channels = 1
    labels = ("effusion", "nodule")
