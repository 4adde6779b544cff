"""The model for an image that says nothing of its modality (the PNGs and JPEGs public chest data
sets ship as): never a head-CT model on a chest film, a question asked once when unsure, and what
was assumed said on screen."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from viewer.io import discover, load_series
from viewer.resources import resources_root
from viewer.state.model_catalog import ModelCatalog
from viewer.state.model_chooser import ModelChooser
from viewer.state.runner import InlineRunner
from viewer.state.session import ViewerSession

SAMPLES = resources_root() / "samples" / "dicom"


def _png(path, size: int, frames: int = 1):
    """A grey picture like NIH's films (``size`` x ``size``, 8-bit, no header of any kind)."""
    rng = np.random.default_rng(0)
    pixels = (rng.random((size, size)) * 200 + 20).astype(np.uint8)
    PILImage.fromarray(pixels).save(path)
    return path


def _open(path):
    found = discover([path])
    return found, load_series(found.series[0])


@pytest.fixture(scope="module")
def catalog():
    return ModelCatalog()


def test_an_nih_sized_png_gets_the_chest_model_whatever_was_in_use(tmp_path, catalog):
    _, film = _open(_png(tmp_path / "00000001_000.png", 1024))
    chooser = ModelChooser(catalog)
    choice = chooser.choose(film, "ct_resnet18")
    assert choice.model == "cxr_resnet18" and choice.modality == "CR"
    assert choice.assumed == "taken for a radiograph (1024 x 1024)" and choice.question is None
    caution = chooser.caution("cxr_resnet18", film, choice)
    assert (
        caution.startswith("Chest X-ray findings (demo, ResNet-18): ") and "PNG without a modality" in caution
    )
    # With the chest model already in use, nothing changes and nothing is asked.
    assert chooser.choose(film, "cxr_resnet18").model is None


def test_a_small_png_asks_once_and_the_answer_is_used_from_then_on(tmp_path, catalog):
    _, small = _open(_png(tmp_path / "slice.png", 512))
    chooser = ModelChooser(catalog)
    first = chooser.choose(small, "ct_resnet18")
    assert first.model == "cxr_resnet18"  # meanwhile the chest model, not the CT one in use
    question = first.question
    assert question.kind == "PNG" and question.used == "cxr_resnet18"
    assert ("ct_resnet18", "CT images") in question.choices
    assert chooser.choose(small, "cxr_resnet18").question is None  # asked once
    chooser.answer("ct_resnet18")
    answered = chooser.choose(small, "cxr_resnet18")
    assert answered.model == "ct_resnet18" and answered.modality == "CT"
    assert answered.assumed == "the model you chose for PNG images"


def test_a_png_opened_with_a_ct_series_is_taken_for_ct(tmp_path, catalog):
    _png(tmp_path / "export.png", 1024)
    found = discover([tmp_path / "export.png", SAMPLES / "ct_0001"])
    index = next(i for i, s in enumerate(found.series) if not s.modality)
    picture = load_series(found.series[index])
    choice = ModelChooser(catalog).choose(picture, "cxr_resnet18", found, index)
    assert choice.model == "ct_resnet18" and choice.assumed == "like the CT studies opened with it"


def test_a_dicom_image_keeps_its_own_modality_and_a_foreign_one_is_said(catalog):
    _, ct = _open(SAMPLES / "ct_0001")
    chooser = ModelChooser(catalog)
    choice = chooser.choose(ct, "cxr_resnet18")
    assert choice.model == "ct_resnet18" and choice.assumed == "" and choice.modality == "CT"
    # The chest model kept on a CT (the user chose it): the panel says what it was made for.
    caution = chooser.caution("cxr_resnet18", ct, chooser.choose(ct, "ct_resnet18"))
    assert "made for CR, DX images, not CT" in caution


def test_a_fresh_session_explains_an_nih_png_with_the_chest_model(tmp_path):
    session = ViewerSession(InlineRunner())
    session.choose_model("ct_resnet18")  # what a first start used to keep
    asked = []
    session.model.model_question.connect(asked.append)
    session.open_paths([_png(tmp_path / "00000013_005.png", 1024)])
    assert session.state.model == "cxr_resnet18" and not asked
    assert session.model.prediction is not None and session.model.prediction.labels[0] != "any"
    assert "taken for a radiograph" in session.model.caution
    session.open_paths([_png(tmp_path / "small.png", 600)])
    (question,) = asked
    assert question.kind == "PNG" and question.used == "cxr_resnet18"
    session.model.answer_question("ct_resnet18")
    assert session.state.model == "ct_resnet18" and "you chose for PNG" in session.model.caution


def test_a_detector_listed_first_never_replaces_the_chest_classifier(tmp_path):
    """A detector or segmenter made for chest films, listed before the chest classifier (the
    bundled ``cxr_detector`` sorts before ``cxr_resnet18``), is never the model picked for one."""
    catalog = ModelCatalog()
    for task in ("detection", "segmentation"):
        folder = tmp_path / task
        folder.mkdir()
        (folder / "manifest.toml").write_text(
            f'name = "chest {task}"\ntask = "{task}"\nlabels = ["nodule"]\nmodalities = ["CR", "DX"]\n'
            '[network]\narch = "fasterrcnn_mobilenet_v3_large_320_fpn"\nweights = "w.safetensors"\n'
            "in_channels = 3\n[input]\nsize = [64, 64]\n"
        )
        (folder / "w.safetensors").write_bytes(b"")  # the chooser reads manifests, never weights
    catalog.bundled = {
        "aa_detector": tmp_path / "detection" / "manifest.toml",
        "aa_segmenter": tmp_path / "segmentation" / "manifest.toml",
        **catalog.bundled,
    }
    preferred = [name for name, _ in catalog.by_preference()]
    assert preferred.index("cxr_resnet18") < preferred.index("aa_detector") < preferred.index("aa_segmenter")
    assert catalog.for_modality("CR", "ct_resnet18") == "cxr_resnet18"
    chooser = ModelChooser(catalog)
    _, chest = _open(SAMPLES / "cxr_0001.dcm")
    assert chooser.choose(chest, "ct_resnet18").model == "cxr_resnet18"
    _, film = _open(_png(tmp_path / "00000001_000.png", 1024))
    assert chooser.choose(film, "ct_resnet18").model == "cxr_resnet18"
    # Chosen by the user, a detector stays: it accepts chest films.
    assert chooser.choose(chest, "aa_detector").model is None
