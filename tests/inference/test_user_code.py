"""``arch = "python:net.py:Class"``: the user's own code is imported only with their consent, and
never for a model that came from a ZIP or a PACS (item 2b of issue 42)."""

from __future__ import annotations

import dataclasses
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.inference.layouts import seeded, write_manifest
from tests.inference.user_net import CustomNet
from viewer.cli import main as cli_main
from viewer.inference.architectures import build
from viewer.inference.manifest import ManifestError, load_manifest
from viewer.inference.model import LoadedModel
from viewer.inference.trust import trust
from viewer.inference.user_code import UserCodeError, allow_user_code

LABELS = ["a", "b", "c"]
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(autouse=True)
def no_consent(tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_VIEWER_TRUST", str(tmp_path / "trusted.json"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the PACS cache lies here
    allow_user_code(False)
    yield
    allow_user_code(False)


def users_model(folder: Path, sentinel: Path, width: int = 8) -> Path:
    """A folder as a researcher has it: net.py (which, imported, creates ``sentinel``), the
    weights of its class, and a manifest naming both."""
    folder.mkdir(parents=True, exist_ok=True)
    source = Path(__file__).with_name("user_net.py").read_text()
    (folder / "net.py").write_text(f"{source}\nfrom pathlib import Path\n\nPath({str(sentinel)!r}).touch()\n")
    save_file(seeded(CustomNet(width=width)).state_dict(), str(folder / "w.safetensors"))
    return write_manifest(
        folder,
        "python:net.py:CustomNet",
        "w.safetensors",
        labels=LABELS,
        network=f"kwargs = {{ width = {width} }}\n",
    )


def test_refused_without_consent_and_never_imported(tmp_path):
    manifest = users_model(tmp_path / "model", tmp_path / "imported", width=4)
    with pytest.raises(UserCodeError, match=r"net\.py.*--trust-code") as caught:
        LoadedModel.from_manifest(manifest, "cpu")
    assert not (tmp_path / "imported").exists()
    assert caught.value.request.weights == (tmp_path / "model" / "net.py").resolve()


def test_accepted_with_consent_kwargs_and_weights(tmp_path):
    manifest = users_model(tmp_path / "model", tmp_path / "imported", width=4)
    allow_user_code(True)
    loaded = LoadedModel.from_manifest(manifest, "cpu")
    assert (tmp_path / "imported").exists() and loaded.family == "python"
    expected = seeded(CustomNet(width=4))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        np.testing.assert_allclose(loaded.network(x).numpy(), expected(x).numpy(), rtol=1e-5, atol=1e-6)


def test_the_viewers_trust_answer_is_consent_for_that_exact_file(tmp_path):
    manifest = users_model(tmp_path / "model", tmp_path / "imported")
    trust(tmp_path / "model" / "net.py", ["import"])  # what "Trust and load" records
    assert build(load_manifest(manifest)).family == "python"
    with (tmp_path / "model" / "net.py").open("a") as f:
        f.write("\n# changed\n")
    with pytest.raises(UserCodeError):
        build(load_manifest(manifest))


def test_refused_from_a_zip_even_with_consent(tmp_path):
    manifest = load_manifest(users_model(tmp_path / "model", tmp_path / "imported"))
    archive = tmp_path / "models.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(manifest.path, "model/manifest.toml")
    allow_user_code(True)
    inside = dataclasses.replace(manifest, path=archive / "model" / "manifest.toml")
    with pytest.raises(ManifestError, match=r"came from elsewhere \(it is inside a ZIP archive\)"):
        build(inside)
    assert not (tmp_path / "imported").exists()


def test_refused_from_the_pacs_cache_even_with_consent(tmp_path):
    folder = tmp_path / "cache" / "saliency-viewer" / "pacs" / "node" / "study"
    manifest = users_model(folder, tmp_path / "imported")
    allow_user_code(True)
    with pytest.raises(ManifestError, match=r"PACS retrieval cache"):
        LoadedModel.from_manifest(manifest, "cpu")
    assert not (tmp_path / "imported").exists()


def test_model_check_cli_takes_trust_code(tmp_path, capsys):
    manifest = users_model(tmp_path / "model", tmp_path / "imported")
    assert cli_main(["model", "check", str(manifest)]) == 1
    assert "--trust-code" in capsys.readouterr().out and not (tmp_path / "imported").exists()
    assert cli_main(["model", "check", str(manifest), "--trust-code", "--device", "cpu"]) == 0
    assert (tmp_path / "imported").exists()


def test_a_bad_target_is_named(tmp_path):
    manifest = users_model(tmp_path / "model", tmp_path / "imported")
    manifest.write_text(manifest.read_text().replace("python:net.py:CustomNet", "python:net.py"))
    with pytest.raises(ManifestError, match=r"python:path/to/net\.py:ClassName"):
        build(load_manifest(manifest))
    shutil.rmtree(tmp_path / "model")
