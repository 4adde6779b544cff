"""``saliency-viewer --self-test`` from the source tree (the installer's slow test runs it frozen)."""

from __future__ import annotations

import os
import subprocess
import sys

from viewer.inference.catalog import bundled_models
from viewer.inference.manifest import load_manifest


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
    # Each bundled model on each sample of its modalities: two chest films (CR), one head CT.
    samples = {"CR": 2, "CT": 1}
    runs = {
        name: sum(samples.get(m, 0) for m in load_manifest(path).modalities)
        for name, path in bundled_models().items()
    }
    assert len(lines) == sum(runs.values()), result.stdout
    for name, n in runs.items():
        assert sum(f" with {name}:" in line for line in lines) == n, (name, result.stdout)
    assert runs["ct_resnet18"] == 1 and runs["cxr_shortcut_resnet18"] == 2
    assert f"self-test passed: {2 * sum(runs.values())} maps" in result.stdout
