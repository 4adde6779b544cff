"""``saliency-viewer pacs ...`` and study URLs as inputs, against the real Orthanc: results made
from studies retrieved by URL are sent back into those studies and read back from the server."""

from __future__ import annotations

import hashlib
import io
import json

import highdicom as hd
import pydicom
import pytest

from tests.pacs.orthanc import ORTHANC_AE, VIEWER_AE, free_port
from tests.pacs.servers import sample_files
from viewer.cli import main
from viewer.inference.catalog import resolve_model
from viewer.inference.manifest import load_manifest


def _study(name: str) -> str:
    path = next(p for p in sample_files() if p.stem == name or p.parent.name == name)
    return str(pydicom.dcmread(path).StudyInstanceUID)


def test_nodes_echo_query_and_retrieve(pacs_config, orthanc, capsys):
    assert main(["pacs", "nodes"]) == 0
    listed = capsys.readouterr().out
    assert "web: dicomweb http://127.0.0.1" in listed and f"move: dimse {ORTHANC_AE}@127.0.0.1" in listed
    assert main(["pacs", "echo", "get"]) == 0
    assert capsys.readouterr().out == f"get: {ORTHANC_AE}@127.0.0.1:{orthanc.dicom_port} answers\n"
    assert main(["pacs", "query", "web", "--modality", "CT", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [s["study_uid"] for s in found] == [_study("ct_0001")] and found[0]["instance_count"] == 28
    assert main(["pacs", "query", "move", "--from", "2025-03-01", "--to", "2025-03-07"]) == 0
    table = capsys.readouterr().out
    assert "Phantom^Chest0001" in table and "Chest0002" not in table and "1 studies on move" in table
    assert main(["pacs", "retrieve", "get", _study("ct_0001")]) == 0
    folder = capsys.readouterr().out.strip()
    assert len(list(pacs_config.cache_folder.glob(f"*/{_study('ct_0001')}/*/*.dcm"))) == 28
    assert folder.endswith(_study("ct_0001"))


def test_info_reads_a_study_url(pacs_config, orthanc, capsys):
    url = f"dimse://{ORTHANC_AE}@127.0.0.1:{orthanc.dicom_port}/{_study('ct_0001')}?calling={VIEWER_AE}"
    assert main(["info", url]) == 0
    assert "28 slices" in capsys.readouterr().out


def test_explain_study_urls_and_send_the_results_back(own_orthanc, tmp_path, capsys):
    orthanc = own_orthanc
    ct, film = _study("ct_0001"), _study("cxr_0001")
    out = tmp_path / "out"
    inputs = [f"{orthanc.dicomweb}/studies/{film}", f"pacs://move/{ct}"]
    code = main(["explain", *inputs, "--model", "cxr_resnet18", "--methods", "gradcam", "--steps", "0",
                 "--quiet", "--out", str(out), "--send-to", "web"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().err.count("sent 2 object(s) to web") == 2
    weights = load_manifest(resolve_model("cxr_resnet18")).weights
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    written = {str(pydicom.dcmread(p).SOPInstanceUID) for p in out.rglob("*.dcm")}

    def on_server(study: str) -> dict[str, pydicom.Dataset]:
        items = orthanc.study_instances(study)
        return {
            ds.SOPClassUID.name: ds
            for ds in (pydicom.dcmread(io.BytesIO(orthanc.file(i["ID"]))) for i in items)
            if str(ds.SOPInstanceUID) in written
        }

    ct_results, film_results = on_server(ct), on_server(film)
    assert set(ct_results) == {"Parametric Map Storage", "Secondary Capture Image Storage"}
    assert set(film_results) == {"Segmentation Storage", "Secondary Capture Image Storage"}
    pm = hd.pm.ParametricMap.from_dataset(ct_results["Parametric Map Storage"])
    assert pm.StudyInstanceUID == ct and pm.NumberOfFrames == 28
    seg = hd.seg.Segmentation.from_dataset(film_results["Segmentation Storage"])
    assert seg.StudyInstanceUID == film and seg.SegmentationType == "FRACTIONAL"
    model_name = load_manifest(resolve_model("cxr_resnet18")).name
    for ds in [*ct_results.values(), *film_results.values()]:
        (equipment,) = [
            e for e in ds.ContributingEquipmentSequence if e.get("ManufacturerModelName") == model_name
        ]
        assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"
        assert equipment.Manufacturer == "Saliency Viewer"
        assert list(equipment.SoftwareVersions)[1] == digest
    # Sent again (a retry): the same SOP Instance UIDs, so nothing is stored twice.
    before = len(orthanc.study_instances(ct))
    ct_files = sorted(p for p in out.rglob("*.dcm") if str(pydicom.dcmread(p).StudyInstanceUID) == ct)
    assert main(["pacs", "send", "web", *map(str, ct_files), "--model", "cxr_resnet18"]) == 0
    assert len(orthanc.study_instances(ct)) == before == 28 + 2


def test_failures_are_one_line_naming_the_node(pacs_config, capsys, tmp_path, monkeypatch):
    from viewer.io.pacs import DimseNode
    from viewer.io.pacs.nodes import save_config

    port = free_port()
    config = pacs_config.with_node(DimseNode("offline", "127.0.0.1", port, "NOBODY", timeout=3))
    monkeypatch.setenv("SALIENCY_VIEWER_PACS", str(save_config(config, tmp_path / "more.toml")))
    assert main(["pacs", "echo", "offline"]) == 2
    assert (
        capsys.readouterr().err
        == f"offline: echo failed: cannot connect to 127.0.0.1:{port} (is the server running?)\n"
    )
    assert main(["info", "pacs://nowhere/1.2.3"]) == 2
    assert "no PACS node 'nowhere'" in capsys.readouterr().err
    # A study whose server fails is left out, named, and listed in problems.csv; with nothing
    # else to do, the run found no images.
    assert (
        main(["explain", "pacs://offline/1.2.3", "--model", "cxr_resnet18", "--out", str(tmp_path / "o")])
        == 1
    )
    err = capsys.readouterr().err
    assert "offline: series query failed: cannot connect" in err and "Traceback" not in err
    assert "pacs://offline/1.2.3" in (tmp_path / "o" / "problems.csv").read_text()


@pytest.mark.parametrize("wrong", ["prefix", "ae"])
def test_cli_names_a_wrong_address_or_ae_title(orthanc, pacs_config, capsys, wrong, monkeypatch, tmp_path):
    from viewer.io.pacs import DicomWebNode, DimseNode
    from viewer.io.pacs.nodes import save_config

    if wrong == "ae":
        node = DimseNode("bad", "127.0.0.1", orthanc.dicom_port, "WRONG_AE", VIEWER_AE, timeout=5)
        expected = "refused the association"
    else:
        node = DicomWebNode("bad", orthanc.dicomweb + "/nonexistent-prefix", timeout=5)
        expected = "HTTP 404"
    monkeypatch.setenv(
        "SALIENCY_VIEWER_PACS", str(save_config(pacs_config.with_node(node), tmp_path / "x.toml"))
    )
    assert main(["pacs", "query", "bad"]) == 2
    assert expected in capsys.readouterr().err


def test_explain_sends_to_a_dicomweb_servers_root_url(own_orthanc, tmp_path, capsys, monkeypatch):
    """``--send-to`` with the server's root (what STOW-RS posts under), no node configured for it;
    a root with credentials in it is refused before anything runs, the password repeated nowhere."""
    orthanc = own_orthanc
    monkeypatch.setenv("SALIENCY_VIEWER_PACS", str(tmp_path / "none.toml"))  # no node: the URL alone
    film_path = next(p for p in sample_files() if p.stem == "cxr_0001")
    film = _study("cxr_0001")
    before = len(orthanc.study_instances(film))
    locked = orthanc.dicomweb.replace("http://", "http://radiologist:hunter2@")
    args = [str(film_path), "--model", "cxr_resnet18", "--methods", "gradcam", "--steps", "0", "--quiet"]
    assert main(["explain", *args, "--out", str(tmp_path / "refused"), "--send-to", locked]) == 2
    err = capsys.readouterr().err
    assert "credentials in the URL are refused" in err and "hunter2" not in err
    assert not (tmp_path / "refused").exists()
    code = main(["explain", *args, "--out", str(tmp_path / "out"), "--send-to", orthanc.dicomweb + "/"])
    assert code == 0, capsys.readouterr().err
    assert "sent 2 object(s) to 127.0.0.1:" in capsys.readouterr().err
    items = orthanc.study_instances(film)
    assert len(items) == before + 2
    back = [pydicom.dcmread(io.BytesIO(orthanc.file(i["ID"]))) for i in items]
    seg = next(ds for ds in back if ds.SOPClassUID.name == "Segmentation Storage")
    assert hd.seg.Segmentation.from_dataset(seg).StudyInstanceUID == film
    assert any(ds.SOPClassUID.name == "Secondary Capture Image Storage" for ds in back)
