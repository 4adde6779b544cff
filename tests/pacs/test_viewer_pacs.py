"""The viewer on a real Orthanc: the PACS session (no Qt), Open from PACS, study URLs given to the
window, Send to PACS read back with highdicom, and the node editor writing pacs.toml."""

from __future__ import annotations

import io
import typing

import highdicom as hd
import numpy as np
import pydicom
import pytest

from tests.pacs.orthanc import free_port
from tests.pacs.servers import nodes_of, sample_files, start_orthanc
from tests.ui.helpers import run_and_wait
from viewer.io.dicom_writer import StudyInfo, write_ct_series
from viewer.io.measurements import Measurement
from viewer.io.pacs import DimseNode, PacsConfig, StudyQuery, load_config
from viewer.io.pacs.nodes import save_config
from viewer.state.pacs_session import PacsSession, RetrieveRequest
from viewer.state.runner import InlineRunner
from viewer.state.session import ViewerSession


def _study(name: str) -> str:
    path = next(p for p in sample_files() if p.stem == name or p.parent.name == name)
    return str(pydicom.dcmread(path).StudyInstanceUID)


@pytest.fixture(scope="module")
def two_series(tmp_path_factory):
    """An Orthanc holding one study of two small CT series (6 and 9 slices)."""
    folder = tmp_path_factory.mktemp("two_series")
    study = StudyInfo(patient_name="Two^Series", patient_id="TWO-1", study_description="Two series")
    rng = np.random.default_rng(3)
    files = []
    for number, slices in ((1, 6), (2, 9)):
        hu = rng.normal(40, 20, (slices, 48, 48)).astype(np.float32)
        files += write_ct_series(
            hu, folder / f"s{number}", study=study, series_number=number, series_description=f"Part {number}"
        )
    server = start_orthanc(folder / "orthanc")
    server.upload(files)
    yield server, study.uid()
    server.stop()


def _pacs(server, tmp_path) -> tuple[PacsSession, ViewerSession]:
    config = PacsConfig(nodes_of(server), tmp_path / "cache", 1.0)
    viewer = ViewerSession(InlineRunner())
    viewer.opening.make_thumbnails = False
    return PacsSession(InlineRunner(), viewer, config=lambda: config), viewer


def test_retrieval_opens_the_first_series_and_adds_the_rest_as_they_arrive(two_series, tmp_path):
    server, study_uid = two_series
    pacs, viewer = _pacs(server, tmp_path)
    found, arrived, shown = [], [], []
    pacs.studies_found.connect(lambda node, studies: found.append((node, studies)))
    # What was on screen, and what the browser listed, as each series arrived.
    pacs.retrieved.connect(lambda s: arrived.append(s.series.number))
    viewer.opening.opened.connect(lambda index, image: shown.append((index, image.n_frames)))
    pacs.query("get", StudyQuery(patient_id="TWO-1"))
    assert [(n, [s.study_uid for s in m]) for n, m in found] == [("get", [study_uid])]
    pacs.retrieve("get", [RetrieveRequest(study_uid)])
    assert arrived == [1, 2] and pacs.errors == []
    assert [s.n_frames for s in viewer.opening.discovery.series] == [6, 9]
    assert shown == [(0, 6)]  # the first opened; the second added, not opened over it
    assert viewer.state.image.n_frames == 6
    viewer.opening.open_series(1)
    assert viewer.state.image.n_frames == 9


def test_series_arriving_after_the_user_opened_something_else_are_not_added(two_series, tmp_path):
    server, study_uid = two_series
    pacs, viewer = _pacs(server, tmp_path)
    chest = next(p for p in sample_files() if p.stem == "cxr_0001")
    # Once the first series is on screen the user opens a radiograph from disk.
    pacs.retrieved.connect(lambda s: s.series.number == 1 and viewer.open_paths([chest]))
    pacs.retrieve("web", [RetrieveRequest(study_uid)])
    assert [s.n_frames for s in viewer.opening.discovery.series] == [1]
    assert viewer.state.image.n_frames == 1 and viewer.state.image.frames[0].source == str(chest)


def test_failures_are_said_once_naming_the_node(two_series, tmp_path):
    server, study_uid = two_series
    pacs, _viewer = _pacs(server, tmp_path)
    pacs.retrieve("web", [RetrieveRequest("1.2.3.4"), RetrieveRequest(study_uid)])
    assert pacs.errors == ["web: retrieve failed: no study 1.2.3.4 on the server"]
    assert pacs.node("nowhere") is None and "no PACS node 'nowhere'" in pacs.errors[-1]


def test_open_from_pacs_dialog_queries_browses_and_opens(qtbot, window, pacs_config, monkeypatch, tmp_path):
    from PySide6.QtCore import Qt

    dialog = window.pacs_ui.open_dialog()
    assert [dialog.node.itemText(i) for i in range(dialog.node.count())] == ["web", "get", "move"]
    dialog.node.setCurrentText("move")
    dialog.modality.setCurrentText("CT")
    with qtbot.waitSignal(window.pacs.studies_found, timeout=30_000):
        qtbot.mouseClick(dialog.search_button, Qt.MouseButton.LeftButton)
    assert dialog.results.topLevelItemCount() == 1
    study = dialog.results.topLevelItem(0)
    assert study.text(6) == "1" and study.text(7) == "28" and study.text(4) == "CT"
    with qtbot.waitSignal(window.pacs.series_found, timeout=30_000):
        study.setExpanded(True)
    assert study.childCount() == 1 and study.child(0).text(7) == "28"
    study.setSelected(True)
    with qtbot.waitSignal(window.pacs.retrieve_done, timeout=60_000) as done:
        qtbot.mouseClick(dialog.retrieve_button, Qt.MouseButton.LeftButton)
    assert done.args == ["done"]
    qtbot.waitUntil(lambda: window.state.image is not None, timeout=60_000)
    assert (
        window.state.image.n_frames == 28
        and str(pacs_config.cache_folder) in window.state.image.frames[0].source
    )
    assert "Retrieved" in dialog.status.text()
    # A node that is not there: said in the dialog, naming it; the window keeps working.
    offline = DimseNode("offline", "127.0.0.1", free_port(), "NOBODY", timeout=3)
    monkeypatch.setenv(
        "SALIENCY_VIEWER_PACS", str(save_config(pacs_config.with_node(offline), tmp_path / "b.toml"))
    )
    dialog.reload_nodes()
    dialog.node.setCurrentText("offline")
    with qtbot.waitSignal(window.pacs.error, timeout=30_000):
        dialog.search()
    assert dialog.status.text().startswith("offline: query failed: cannot connect to 127.0.0.1")


def test_study_url_opens_and_results_are_sent_back_into_the_study(qtbot, window, own_orthanc):
    ct = _study("ct_0001")
    window.open_paths([f"pacs://get/{ct}"])
    qtbot.waitUntil(lambda: window.session.model.prediction is not None, timeout=120_000)
    assert window.state.image.n_frames == 28
    run_and_wait(qtbot, window, ["gradcam"])
    assert window.pacs_ui.available() == {"pm": True, "sc": True, "seg": False, "sr": False}
    length = window.measure.book.add(
        Measurement("length", window.state.frame, ((100.0, 100.0), (300.0, 250.0)))
    )
    assert window.pacs_ui.available()["sr"]
    with qtbot.waitSignal(window.pacs.sent, timeout=60_000):
        window.pacs_ui.send("web", ["pm", "sc", "sr"])
    items = own_orthanc.study_instances(ct)
    sent = [pydicom.dcmread(io.BytesIO(own_orthanc.file(i["ID"]))) for i in items]
    sent = {ds.SOPClassUID.name: ds for ds in sent if ds.Modality != "CT"}
    assert set(sent) == {
        "Parametric Map Storage",
        "Secondary Capture Image Storage",
        "Comprehensive 3D SR Storage",
    }
    report = hd.sr.Comprehensive3DSR.from_dataset(sent["Comprehensive 3D SR Storage"])
    (group,) = report.content.get_planar_roi_measurement_groups()
    assert group.get_measurements()[0].value == pytest.approx(length.length, rel=1e-6)
    assert report.StudyInstanceUID == ct
    pm = hd.pm.ParametricMap.from_dataset(sent["Parametric Map Storage"])
    assert (
        pm.StudyInstanceUID == ct
        and pm.PatientID
        == pydicom.dcmread(next(p for p in sample_files() if p.parent.name == "ct_0001")).PatientID
    )
    model = window.session.model.manifest().name
    for ds in sent.values():
        assert [e.get("ManufacturerModelName") for e in ds.ContributingEquipmentSequence].count(model) == 1
    assert len(items) == 28 + 3


def test_node_editor_writes_the_file_and_keeps_passwords_out_of_it(qtbot, tmp_path, monkeypatch):
    import keyring
    from keyring.backend import KeyringBackend

    from viewer.ui.pacs_nodes import NodeEditor

    class Memory(KeyringBackend):
        priority = 1
        kept: typing.ClassVar[dict] = {}

        def get_password(self, service, username):
            return self.kept.get((service, username))

        def set_password(self, service, username, password):
            self.kept[(service, username)] = password

        def delete_password(self, service, username):
            self.kept.pop((service, username), None)

    previous = keyring.get_keyring()
    keyring.set_keyring(Memory())
    try:
        path = tmp_path / "pacs.toml"
        editor = NodeEditor(None, path)
        qtbot.addWidget(editor)
        editor.name.setText("archive")
        editor.url.setText("https://pacs.example.org/dicom-web")
        editor.auth.setCurrentIndex(1)
        editor.username.setText("reader")
        editor.password.setText("s3cret-word")
        editor.add_node()
        editor.name.setText("scanner")
        editor.kind.setCurrentIndex(1)
        editor.host.setText("10.0.0.5")
        editor.port.setValue(11112)
        editor.called.setText("CT_SCANNER")
        editor.scp_port.setValue(11113)
        editor.tls.setChecked(True)
        editor.tls_files["tls_cert"].setText("/etc/viewer.pem")
        editor.save()
        assert "tls_cert and tls_key go together" in editor.message.text()  # said, nothing written
        assert not path.exists()
        editor.tls_files["tls_key"].setText("/etc/viewer.key")
        editor.save()
        assert editor.result() == editor.DialogCode.Accepted
        text = path.read_text()
        assert "s3cret-word" not in text
        config = load_config(path)
        assert config.nodes["archive"].username == "reader" and config.nodes["archive"].auth == "basic"
        assert config.nodes["scanner"].scp_port == 11113 and config.nodes["scanner"].called_ae == "CT_SCANNER"
        assert config.nodes["scanner"].tls and config.nodes["scanner"].tls_key == "/etc/viewer.key"
        assert Memory.kept[("saliency-viewer", "pacs:archive")] == "s3cret-word"
        # A wrong AE title is said, and nothing is written.
        again = NodeEditor(None, path)
        qtbot.addWidget(again)
        again.list.setCurrentRow(1)
        again.called.setText("BACK\\SLASH")
        again.save()
        assert "called_ae must be 1-16 ASCII characters" in again.message.text()
        assert load_config(path).nodes["scanner"].called_ae == "CT_SCANNER"
    finally:
        keyring.set_keyring(previous)
