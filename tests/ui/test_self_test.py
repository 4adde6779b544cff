"""``saliency-viewer --self-test`` from the source tree (the installer's slow test runs it frozen)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_self_test_runs_every_bundled_model_on_the_samples_and_passes():
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}  # it must not need one
    result = subprocess.run(
        [sys.executable, "-m", "viewer", "--self-test", "--methods", "gradcam,guided-backprop"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    # Qt's desktop plugin is checked first, whatever display there is (none, here).
    assert "ok  desktop: " in result.stdout.splitlines()[0]
    lines = [line for line in result.stdout.splitlines() if line.startswith("ok  ") and "desktop" not in line]
    # Two chest films with the two chest models, and the head CT with the CT model.
    assert len(lines) == 5, result.stdout
    assert sum("ct_resnet18" in line for line in lines) == 1
    assert sum("cxr_shortcut_resnet18" in line for line in lines) == 2
    assert "self-test passed: 10 maps" in result.stdout
