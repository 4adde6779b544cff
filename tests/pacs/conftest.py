"""A real Orthanc for the PACS tests, started once per session on loopback with the bundled
samples uploaded, and a pacs.toml naming it by DICOMweb, C-GET and C-MOVE."""

from __future__ import annotations

import pytest

from tests.pacs.servers import sample_files, start_orthanc, use_config


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    server.upload(sample_files())
    yield server
    server.stop()


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
