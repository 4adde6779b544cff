"""The wheel as ``pip install saliency-viewer`` gets it: the package with its resources and the
bundled demo models, found outside a checkout.

The default run builds the wheel without dependencies (seconds) and checks its file list and that
the unpacked package finds its models; the slow test installs it with its dependencies into a
fresh virtual environment and runs ``saliency-viewer`` there, from a folder outside the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from tests.installer.bundled import ALL_MODELS, LEFT_OUT, MODELS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    (built,) = out.glob("saliency_viewer-*.whl")
    return built


def _outside_env(**extra: str) -> dict[str, str]:
    """The environment less anything that points Python at this checkout or its venv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return env | extra


def test_wheel_carries_every_bundled_model_and_no_training_script(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert MODELS, "no bundled models in the checkout"
    for model in MODELS:
        for file in model.iterdir():
            assert f"viewer/_models/{model.name}/{file.name}" in names
    assert not [n for n in names if n.startswith("viewer/_models/") and n.endswith(".py")]
    assert LEFT_OUT and {m.name for m in ALL_MODELS} > LEFT_OUT  # the exclude names real folders
    assert not [n for n in names if any(n.startswith(f"viewer/_models/{m}/") for m in LEFT_OUT)]
    assert "viewer/_resources/samples/dicom/cxr_0001.dcm" in names
    assert "viewer/_resources/icons/saliency-viewer.svg" in names
    assert {"viewer/py.typed", "viewer/__init__.pyi"} <= names  # the public API's types (PEP 561)
    assert not [n for n in names if n.startswith("viewer/_resources/docs/")]  # README screenshots
    sources = {
        f"{p.relative_to(ROOT)}" for p in (ROOT / "viewer").rglob("*.py") if "__pycache__" not in p.parts
    }
    assert sources <= names
    assert {n.split("/")[0] for n in names} == {"viewer", wheel.name.split("-py3")[0] + ".dist-info"}


def test_unpacked_wheel_finds_its_models_and_resources(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import viewer, viewer.resources as r\n"
        "from viewer.inference.catalog import bundled_models, resolve_model\n"
        "print(viewer.__file__, r.resources_root(), r.models_root(), sep='\\n')\n"
        "print(sorted(bundled_models()))\n"
        "print(resolve_model('cxr_resnet18'))\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=elsewhere, capture_output=True, text=True, timeout=300,
        env=_outside_env(PYTHONPATH=str(site)),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    package, resources, models, names, manifest = result.stdout.splitlines()[-5:]
    assert Path(package).parent == site / "viewer"
    assert Path(resources) == site / "viewer" / "_resources"
    assert Path(models) == site / "viewer" / "_models"
    assert names == str([m.name for m in MODELS])
    assert Path(manifest) == site / "viewer" / "_models" / "cxr_resnet18" / "manifest.toml"


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_pip_installed_wheel_runs_outside_the_checkout(wheel):
    """``pip install`` of the wheel with its dependencies (torch from pip's configured sources)
    into a fresh virtual environment, then the demo's commands from a folder outside the checkout."""
    with tempfile.TemporaryDirectory(prefix="sv-wheel-") as tmp:
        home = Path(tmp)
        env_dir, elsewhere = home / "venv", home / "elsewhere"
        elsewhere.mkdir()
        env = _outside_env(QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(home / "config"))
        subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, env=env)
        pip = subprocess.run(
            [env_dir / "bin" / "python", "-m", "pip", "install", "--quiet", str(wheel)],
            capture_output=True, text=True, timeout=2400, env=env,
        )  # fmt: skip
        assert pip.returncode == 0, pip.stderr[-4000:]

        def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
            command = [str(env_dir / "bin" / "saliency-viewer"), *args]
            return subprocess.run(
                command, cwd=elsewhere, capture_output=True, text=True, timeout=timeout, env=env
            )

        probe = "from viewer.cli.info import sample_studies; print(sample_studies())"
        where = subprocess.run(
            [env_dir / "bin" / "python", "-c", probe],
            cwd=elsewhere, capture_output=True, text=True, env=env, check=True,
        )  # fmt: skip
        samples = Path(where.stdout.strip())
        assert samples.is_relative_to(env_dir) and samples.is_dir()  # the installed copy, not the checkout's

        info = run("info", str(samples))
        assert info.returncode == 0, info.stderr[-4000:]
        assert "3 series from 30 file(s); 0 skipped" in info.stdout

        check = run("model", "check", "cxr_resnet18")
        assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-4000:]
        assert "_models/cxr_resnet18" in check.stdout

        self_test = run("--self-test", timeout=1800)
        assert self_test.returncode == 0, self_test.stdout[-4000:] + self_test.stderr[-4000:]
        for model in MODELS:
            assert model.name in self_test.stdout
        assert "self-test passed" in self_test.stdout
