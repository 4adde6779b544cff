"""``saliency-viewer --self-test`` from the source tree (the installer's slow test runs it frozen)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from viewer.inference.catalog import bundled_models
from viewer.inference.manifest import load_manifest
from viewer.ui import self_test


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


def test_a_model_that_cannot_load_fails_the_self_test_at_once_naming_it(qapp, tmp_path, monkeypatch, capsys):
    """A bundled model whose library is missing (CI's frozen app once lacked MONAI for the
    segmenter) must fail the self-test with the viewer's message, not wait out the timeout."""
    broken = tmp_path / "models" / "broken_model"
    shutil.copytree(bundled_models()["cxr_resnet18"].parent, broken)
    manifest = (broken / "manifest.toml").read_text()
    (broken / "manifest.toml").write_text(manifest.replace('arch = "resnet18"', 'arch = "nosuchfamily:Net"'))
    film = next(p for p in self_test.sample_studies() if p.suffix == ".dcm")
    monkeypatch.setattr("viewer.inference.catalog.models_root", lambda: broken.parent)
    monkeypatch.setattr(self_test, "sample_studies", lambda: [film])
    started = time.monotonic()
    status = self_test.run_self_test(["gradcam"], out=tmp_path / "out", timeout_s=120)
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert status == 1
    assert elapsed < 60, f"waited {elapsed:.0f} s for a model that had already failed"
    assert f"broken_model on {film.name}" in err and "nosuchfamily" in err, err
