"""``saliency-viewer --demo [--compare] --screenshot OUT.png``: the real window, headless, in a subprocess."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.ui.helpers import CHEST, run_viewer


def _jet_red(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (r > 180) & (g < 120) & (b < 120)


def test_demo_screenshot_shows_the_window_with_the_map(tmp_path):
    out = tmp_path / "shot.png"
    result = run_viewer("--demo", "--methods", "gradcam", "--screenshot", out, "--size", "1280x800")
    assert result.returncode == 0, result.stderr
    assert "Grad-CAM" in result.stdout
    rgb = np.asarray(Image.open(out).convert("RGB"))
    assert rgb.shape == (800, 1280, 3)
    assert _jet_red(rgb).sum() > 2000  # the hot end of the Grad-CAM layer is on screen
    # The same study without methods to run shows no map colour.
    plain = tmp_path / "plain.png"
    result = run_viewer(
        CHEST,
        "--model",
        "cxr_resnet18",
        "--methods",
        "gradcam",
        "--target",
        "nodule",
        "--screenshot",
        plain,
        "--size",
        "1280x800",
    )
    assert result.returncode == 0, result.stderr
    assert "nodule" in result.stdout


def test_compare_screenshot_and_failures_exit_non_zero(tmp_path):
    out = tmp_path / "cmp.png"
    result = run_viewer("--demo", "--compare", "--methods", "gradcam,guided-backprop", "--screenshot", out)
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == (1600, 1000)
    bad = run_viewer(
        "--demo", "--target", "fracture", "--methods", "gradcam", "--screenshot", tmp_path / "x.png"
    )
    assert bad.returncode == 1 and "fracture" in bad.stderr
    missing = run_viewer(tmp_path / "nothing.dcm", "--screenshot", tmp_path / "y.png")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    unknown = run_viewer("--demo", "--methods", "gradcam,magic", "--screenshot", tmp_path / "z.png")
    assert unknown.returncode == 2 and "magic" in unknown.stderr
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()


def test_start_up_probe_reports_the_first_image(tmp_path):
    """``--quit-on-first-image``, which installer/build.py times, quits once the image is drawn."""
    result = run_viewer(CHEST, "--quit-on-first-image", timeout=300, HOME=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "first image shown"
    bad = run_viewer("--quit-on-first-image", timeout=300, HOME=str(tmp_path))
    assert bad.returncode == 2 and "needs something to open" in bad.stderr


@pytest.mark.slow  # keeps the default run within its budget
def test_mpr_screenshot_of_a_whole_series_explanation(tmp_path):
    from viewer.resources import resource_path

    out = tmp_path / "mpr.png"
    ct = resource_path("samples", "dicom", "ct_0001")
    result = run_viewer(
        ct, "--model", "ct_resnet18", "--methods", "gradcam", "--target", "subdural",
        "--layout", "mpr", "--explain-series", "--screenshot", out, "--size", "1280x800",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "subdural" in result.stdout and "Grad-CAM" in result.stdout
    rgb = np.asarray(Image.open(out).convert("RGB"))
    # The map is in the three planes: its hot end shows in the left half (axial, sagittal) and
    # in the top-right quarter (coronal).
    assert _jet_red(rgb[:, :640]).sum() > 500 and _jet_red(rgb[:400, 640:]).sum() > 100
    film = run_viewer(CHEST, "--methods", "gradcam", "--layout", "mpr", "--screenshot", tmp_path / "no.png")
    assert film.returncode == 1 and "several slices" in film.stderr
