"""The standalone bundle, built for real: ``installer/build.py``, then the frozen app's --self-test.

Marked slow (a fresh build venv, PyInstaller's analysis of torch and Qt, then every bundled model
on the bundled samples: about 15-25 minutes on 2 cores); run it with ``make installer-test``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "dist" / "SaliencyViewer"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


@pytest.fixture(scope="module")
def bundle() -> Path:
    build = subprocess.run(
        [sys.executable, str(ROOT / "installer" / "build.py"), "--no-archive"],
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return BUNDLE


def _run(bundle: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["QT_QPA_PLATFORM"] = "offscreen"
    return subprocess.run(
        [str(bundle / "SaliencyViewer"), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_bundle_holds_cpu_torch_only(bundle):
    internal = bundle / "_internal"
    libraries = {p.name for p in internal.rglob("*.so*")}
    cuda = sorted(n for n in libraries if n.startswith(("libcudart", "libcublas", "libcudnn", "libnccl")))
    assert not cuda, f"CUDA libraries in the bundle: {cuda}"
    assert any(n.startswith("libtorch_cpu") for n in libraries)
    assert (internal / "models" / "cxr_resnet18" / "weights.safetensors").is_file()
    assert (internal / "resources" / "samples" / "dicom" / "ct_0001").is_dir()


def test_frozen_self_test_runs_every_model_on_the_samples(bundle):
    result = _run(bundle, "--self-test", timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for model in ("ct_resnet18", "cxr_resnet18", "cxr_shortcut_resnet18"):
        assert model in result.stdout
    assert "self-test passed" in result.stdout
    assert "ok  desktop: " in result.stdout  # the desktop's platform plugin, checked first


def test_frozen_app_checks_the_desktop_before_qt(bundle, xvfb, tmp_path):
    """The bundle's own Qt plugin loads on a real X server; without a display the frozen app
    says so and exits 1, no abort."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QT_", "WAYLAND", "XDG_SESSION"))}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    on_x = subprocess.run([str(bundle / "SaliencyViewer"), "--check-desktop"], env=env | {"DISPLAY": xvfb},
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert on_x.returncode == 0 and "'xcb'" in on_x.stdout, on_x.stderr
    env.pop("DISPLAY", None)
    headless = subprocess.run([str(bundle / "SaliencyViewer"), "--demo"], env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
    assert headless.returncode == 1 and "DISPLAY is not set" in headless.stderr


def test_frozen_cli_decodes_and_explains(bundle, tmp_path, testdata):
    """The CLI subcommands run from the bundle, and its pixel decoders (found through entry points
    and imported by name at run time) are all there: JPEG 2000, JPEG-LS, JPEG lossless."""
    sample = bundle / "_internal" / "resources" / "samples" / "dicom" / "cxr_0001.dcm"
    compressed = ("MR_small_jp2klossless.dcm", "JPEGLSNearLossless_16.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm")
    inputs = [str(sample), *(testdata(name) for name in compressed)]
    out = tmp_path / "out"
    result = _run(
        bundle, "explain", *inputs, "--model", "cxr_resnet18", "--methods", "gradcam", "--out", str(out),
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert len(list(out.rglob("gradcam.npy"))) == 4
