"""The documentation site builds with MkDocs in strict mode, its generated tables list every
method and score the program registers, and strictness is real: a broken link fails the build."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from viewer.explain.metric_catalog import METRICS
from viewer.explain.registry import METHODS

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("mkdocs")


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page.read_text()))


def test_the_site_builds_strict_with_every_method_and_score(tmp_path):
    done = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr
    methods = _text(tmp_path / "site" / "methods" / "index.html")
    for method_id, cls in METHODS.items():
        assert method_id in methods and " ".join(cls.title.split()) in methods, method_id
    metrics = _text(tmp_path / "site" / "metrics" / "index.html")
    for metric_id, entry in METRICS.items():
        assert metric_id in metrics and entry.title in metrics, metric_id
    assert "energy_in_mask" in metrics  # the file column names are listed with their score
    contributing = _text(tmp_path / "site" / "contributing" / "index.html")
    assert "Small commits" in contributing


def test_a_broken_link_fails_the_build(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    shutil.copy(ROOT / "CONTRIBUTING.md", copy / "CONTRIBUTING.md")
    glossary = copy / "docs" / "glossary.md"
    glossary.write_text(glossary.read_text() + "\nSee [the missing page](missing.md).\n")
    done = build(copy / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0 and "missing.md" in done.stderr + done.stdout
