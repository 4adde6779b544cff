"""Orthanc servers for the PACS tests and the viewer's nodes for them (the fixtures that start
them are in this folder's conftest)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.pacs.orthanc import ORTHANC_AE, VIEWER_AE, Orthanc, dicomweb_plugin
from tests.system import need_program
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
