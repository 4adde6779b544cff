"""Models made on phantoms say so whenever they look at a real image: manifest, viewer, exports, CLI."""

from __future__ import annotations

import json

import pytest

from viewer.cli import main
from viewer.inference.catalog import bundled_models
from viewer.inference.manifest import ManifestError, load_manifest
from viewer.io import discover, load_series
from viewer.resources import resource_path


def open_image(path):
    return load_series(discover([path]).series[0])


@pytest.mark.parametrize("name", ["cxr_resnet18", "cxr_shortcut_resnet18", "ct_resnet18"])
def test_bundled_models_declare_their_synthetic_domain(name):
    manifest = load_manifest(bundled_models()[name])
    assert manifest.domain == "synthetic"
    assert "phantom" in manifest.trained_on and "not for clinical use" in manifest.intended_use


def test_caution_on_real_images_only(testdata):
    chest = load_manifest(bundled_models()["cxr_resnet18"])
    phantom = open_image(resource_path("samples", "dicom", "cxr_0001.dcm"))
    real_cr = open_image(testdata("RG1_UNCR.dcm"))  # a real chest CR from pydicom-data
    assert chest.caution(phantom) is None
    assert chest.caution(real_cr) == (
        "Chest X-ray findings (demo, ResNet-18): trained on synthetic phantoms only; "
        "these probabilities mean nothing on real images"
    )
    assert chest.caution(None) is None


def test_domain_is_checked(tmp_path):
    (tmp_path / "w.pt").write_bytes(b"")
    (tmp_path / "manifest.toml").write_text(
        'name = "m"\ntask = "multilabel"\nlabels = ["a"]\ndomain = "real"\n'
        '[network]\narch = "resnet18"\nweights = "w.pt"\nin_channels = 1\n[input]\nsize = [8, 8]\n'
    )
    with pytest.raises(ManifestError, match="domain must be one of synthetic, clinical, research"):
        load_manifest(tmp_path / "manifest.toml")


def test_explain_prints_the_caution_once_and_records_it(tmp_path, testdata, capsys):
    out = tmp_path / "out"
    inputs = [
        testdata("RG1_UNCR.dcm"),
        testdata("RG1_UNCI.dcm"),
        str(resource_path("samples", "dicom", "cxr_0001.dcm")),
    ]
    code = main(["explain", *inputs, "--model", "cxr_resnet18", "--methods", "gradcam", "--steps", "0",
                 "--quiet", "--out", str(out)])  # fmt: skip
    assert code == 0
    assert (
        capsys.readouterr().err.count("caution: Chest X-ray findings (demo, ResNet-18): trained on synthetic")
        == 1
    )
    records = {p.parent.name: json.loads(p.read_text()) for p in out.rglob("predictions.json")}
    assert "synthetic phantoms only" in records["RG1_UNCR"]["caution"]
    assert "caution" not in records["cxr_0001"]
