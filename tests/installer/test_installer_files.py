"""The installer's pieces that need no build: helper logic, icons, the Linux menu entry and the
resource lookup of a frozen app (the start-up probe the build times is tested with the other
headless modes, in tests/ui/test_screenshot_mode.py)."""

from __future__ import annotations

import configparser
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from viewer import resources

ROOT = Path(__file__).resolve().parents[2]
INSTALLER = ROOT / "installer"


@pytest.fixture(scope="module")
def build():
    spec = importlib.util.spec_from_file_location("installer_build", INSTALLER / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runtime_requirements_leave_torch_to_the_cpu_install(build):
    requirements = build.runtime_requirements()
    names = {r.split(">")[0].split("[")[0].split("=")[0].lower() for r in requirements}
    assert "torch" not in names and "torchvision" not in names
    assert {"pyside6-essentials", "pydicom", "pyqtgraph", "safetensors"} <= names
    # Test-only packages (oracles, linters) stay out of the bundle.
    assert not names & {"captum", "grad-cam", "pytest", "ruff"}
    # The bundled segmenter's library goes in beside them (the frozen app has no pip).
    assert [r.split(">")[0] for r in build.model_requirements()] == ["monai"]


def test_newest_local_cpu_wheel_for_this_python_is_chosen(build, tmp_path, monkeypatch):
    import platform

    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    machine = platform.machine()
    names = [
        f"torch-2.9.1+cpu-{tag}-{tag}-manylinux_2_28_{machine}.whl",
        f"torch-2.13.0+cpu-{tag}-{tag}-manylinux_2_28_{machine}.whl",
        f"torch-2.14.1-{tag}-{tag}-manylinux_2_28_{machine}.whl",  # CUDA build: no +cpu
        f"torch-2.15.0+cpu-cp39-cp39-manylinux_2_28_{machine}.whl",  # another Python
    ]
    for name in names:
        (tmp_path / name).touch()
    monkeypatch.setattr(build, "pip_find_links", lambda python: [tmp_path])
    assert build.local_cpu_torch_wheel(Path(sys.executable)).name == names[1]
    monkeypatch.setattr(build, "pip_find_links", lambda python: [])
    assert build.local_cpu_torch_wheel(Path(sys.executable)) is None


def test_icons_render_for_every_platform(tmp_path):
    svg = ROOT / "resources" / "icons" / "saliency-viewer.svg"
    subprocess.run(
        [sys.executable, str(INSTALLER / "make_icons.py"), str(svg), str(tmp_path)],
        check=True,
        capture_output=True,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    png = Image.open(tmp_path / "saliency-viewer-256.png")
    assert png.size == (256, 256) and png.mode == "RGBA"
    alpha = png.getchannel("A")
    assert alpha.getpixel((0, 0)) == 0 and alpha.getpixel((128, 128)) == 255  # rounded, opaque
    ico = Image.open(tmp_path / "saliency-viewer.ico")
    assert (256, 256) in ico.info["sizes"] and (16, 16) in ico.info["sizes"]
    assert Image.open(tmp_path / "saliency-viewer.icns").format == "ICNS"


def test_desktop_entry_installs_with_the_bundle_path(tmp_path):
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(INSTALLER / "linux" / "saliency-viewer.desktop")
    section = entry["Desktop Entry"]
    assert section["Type"] == "Application" and section["Categories"].endswith(";")
    assert "%F" in section["Exec"]  # files and folders dropped on the launcher open

    unpacked = tmp_path / "saliency-viewer-1.0-linux"
    unpacked.mkdir()
    for name in ("saliency-viewer.desktop", "install-desktop-entry.sh"):
        shutil.copy2(INSTALLER / "linux" / name, unpacked)
    Image.new("RGBA", (256, 256)).save(unpacked / "saliency-viewer.png")
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "share")}
    script = str(unpacked / "install-desktop-entry.sh")
    subprocess.run(["sh", script], check=True, env=env, capture_output=True)
    installed = tmp_path / "share" / "applications" / "saliency-viewer.desktop"
    text = installed.read_text()
    assert f'Exec="{unpacked}/SaliencyViewer/SaliencyViewer" %F' in text
    assert f"Icon={tmp_path}/share/icons/hicolor/256x256/apps/saliency-viewer.png" in text
    subprocess.run(["sh", script, "--remove"], check=True, env=env, capture_output=True)
    assert not installed.exists()


def test_frozen_app_finds_resources_and_models_in_its_bundle(tmp_path, monkeypatch):
    (tmp_path / "resources").mkdir()
    (tmp_path / "models").mkdir()
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    monkeypatch.delenv("SALIENCY_VIEWER_RESOURCES", raising=False)
    resources.resources_root.cache_clear()
    resources.models_root.cache_clear()
    try:
        assert resources.resources_root() == tmp_path / "resources"
        assert resources.models_root() == tmp_path / "models"
    finally:
        monkeypatch.undo()
        resources.resources_root.cache_clear()
        resources.models_root.cache_clear()
    assert resources.resources_root() == ROOT / "resources"  # a checkout again


def test_installed_package_takes_its_own_models_not_a_neighbours(tmp_path, monkeypatch):
    """In site-packages, a top-level ``models`` or ``resources`` beside ``viewer`` is another
    distribution's; only a checkout (``pyproject.toml`` beside the package) reads them."""
    site = tmp_path / "site-packages"
    for folder in ("viewer", "models/other_package", "resources"):
        (site / folder).mkdir(parents=True)
    monkeypatch.setattr(resources, "_PACKAGE_DIR", site / "viewer")
    monkeypatch.delattr(sys, "_MEIPASS", raising=False)
    monkeypatch.delenv("SALIENCY_VIEWER_RESOURCES", raising=False)
    resources.resources_root.cache_clear()
    resources.models_root.cache_clear()
    try:
        assert resources.models_root() is None
        with pytest.raises(FileNotFoundError, match="resources folder was not found"):
            resources.resources_root()
        (site / "viewer" / "_models").mkdir()
        (site / "viewer" / "_resources").mkdir()
        resources.resources_root.cache_clear()
        resources.models_root.cache_clear()
        assert resources.models_root() == site / "viewer" / "_models"
        assert resources.resources_root() == site / "viewer" / "_resources"
    finally:
        monkeypatch.undo()
        resources.resources_root.cache_clear()
        resources.models_root.cache_clear()
    assert resources.models_root() == ROOT / "models"  # a checkout again
