"""A real Orthanc for the PACS tests, started once per session on loopback with the bundled
samples uploaded, and a pacs.toml naming it by DICOMweb, C-GET and C-MOVE."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import need_program
from tests.pacs.orthanc import ORTHANC_AE, VIEWER_AE, Orthanc, dicomweb_plugin
from tests.ui.conftest import settings, window  # noqa: F401 (the real main window, for the GUI tests)
from viewer.cli.info import sample_studies
from viewer.io.pacs import DicomWebNode, DimseNode, PacsConfig
from viewer.io.pacs.nodes import save_config


def start_orthanc(folder: Path, **kwargs) -> Orthanc:
    executable = need_program("Orthanc")
    plugin = dicomweb_plugin()
    if plugin is None:
        if os.environ.get("CI"):
            pytest.fail("Orthanc's DICOMweb plugin is missing: .ci/run installs orthanc-dicomweb")
        pytest.skip("Orthanc's DICOMweb plugin is not installed (Debian: orthanc-dicomweb)")
    return Orthanc(executable, plugin, folder, **kwargs).start()


def sample_files() -> list[Path]:
    return sorted(p for p in sample_studies().rglob("*.dcm"))


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    server.upload(sample_files())
    yield server
    server.stop()


def nodes_of(server: Orthanc) -> dict:
    return {
        "web": DicomWebNode("web", server.dicomweb, timeout=10),
        "get": DimseNode("get", "127.0.0.1", server.dicom_port, ORTHANC_AE, VIEWER_AE, timeout=10),
        "move": DimseNode(
            "move",
            "127.0.0.1",
            server.dicom_port,
            ORTHANC_AE,
            VIEWER_AE,
            scp_port=server.scp_port,
            timeout=10,
        ),
    }


def use_config(server: Orthanc, folder: Path, monkeypatch) -> PacsConfig:
    """pacs.toml in ``folder`` with the three nodes of ``server`` and a fresh cache, set for the CLI."""
    config = PacsConfig(nodes_of(server), folder / "cache", 1.0)
    monkeypatch.setenv("SALIENCY_VIEWER_PACS", str(save_config(config, folder / "pacs.toml")))
    return config


@pytest.fixture
def pacs_config(orthanc, tmp_path, monkeypatch):
    return use_config(orthanc, tmp_path, monkeypatch)


@pytest.fixture
def own_orthanc(tmp_path, monkeypatch):
    """An Orthanc of the test's own (for tests that store into it), the samples uploaded, and its
    pacs.toml set."""
    server = start_orthanc(tmp_path / "orthanc")
    server.upload(sample_files())
    use_config(server, tmp_path, monkeypatch)
    yield server
    server.stop()
