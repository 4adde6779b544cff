"""Query, retrieve and send against a real Orthanc, by DICOMweb, C-GET and C-MOVE, and its faults."""

from __future__ import annotations

import pydicom
import pytest

from tests.pacs.orthanc import ORTHANC_AE, VIEWER_AE
from tests.pacs.servers import nodes_of, sample_files, start_orthanc
from viewer.io.pacs import (
    DicomWebNode,
    DimseNode,
    PacsError,
    StudyCache,
    StudyQuery,
    connect,
    retrieve_study,
)

PROTOCOLS = ("web", "get", "move")


def _pixels_by_uid(files) -> dict[str, bytes]:
    return {str(ds.SOPInstanceUID): ds.PixelData for ds in (pydicom.dcmread(f) for f in files)}


def _ct_study_uid() -> str:
    return str(
        pydicom.dcmread(next(p for p in sample_files() if p.parent.name == "ct_0001")).StudyInstanceUID
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_echo_and_study_query(orthanc, protocol):
    connection = connect(nodes_of(orthanc)[protocol])
    connection.echo()
    every = connection.find_studies(StudyQuery())
    assert len(every) == 3
    ct = connection.find_studies(StudyQuery(modality="CT"))
    assert [s.study_uid for s in ct] == [_ct_study_uid()]
    assert ct[0].modalities == ("CT",) and ct[0].series_count == 1 and ct[0].instance_count == 28
    by_name = connection.find_studies(StudyQuery(patient_name="Phantom^Chest*"))
    assert sorted(s.patient_id for s in by_name) == ["PH-CXR_0001", "PH-CXR_0002"]
    by_id = connection.find_studies(StudyQuery(patient_id="PH-CXR_0002"))
    assert [s.study_date for s in by_id] == ["20250308"]
    import datetime as dt

    in_range = connection.find_studies(
        StudyQuery(date_from=dt.date(2025, 6, 1), date_to=dt.date(2025, 6, 30))
    )
    assert [s.study_date for s in in_range] == ["20250615"]
    series = connection.find_series(ct[0].study_uid)
    assert len(series) == 1 and series[0].modality == "CT" and series[0].instance_count == 28


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_retrieve_equals_the_uploaded_files_byte_for_byte(orthanc, protocol, tmp_path):
    cache = StudyCache(tmp_path, 10**9)
    connection = connect(nodes_of(orthanc)[protocol])
    opened = []
    done = retrieve_study(connection, cache, _ct_study_uid(), on_series=lambda s: opened.append(s.folder))
    assert [s.complete for s in done] == [True] and opened == [done[0].folder]
    uploaded = _pixels_by_uid(p for p in sample_files() if p.parent.name == "ct_0001")
    assert _pixels_by_uid(done[0].folder.glob("*.dcm")) == uploaded
    # As stored: the sample's JPEG 2000 is not transcoded on the way.
    original = pydicom.dcmread(next(p for p in sample_files() if p.parent.name == "ct_0001"))
    got = pydicom.dcmread(next(done[0].folder.glob("*.dcm")))
    assert got.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    again = retrieve_study(connection, cache, _ct_study_uid())
    assert again[0].received == 0 and again[0].complete  # from the cache, nothing asked for again


def test_an_interrupted_retrieval_resumes_with_only_what_is_missing(orthanc, tmp_path):
    cache = StudyCache(tmp_path, 10**9)
    node = nodes_of(orthanc)["web"]
    folder = cache.series_folder(node, _ct_study_uid(), _series_uid())
    connection = connect(node)
    done = retrieve_study(connection, cache, _ct_study_uid())
    for path in sorted(folder.glob("*.dcm"))[:20]:  # as if cut short: 8 of 28 arrived
        path.unlink()
    cache.mark(folder, node, 28, complete=False)
    again = retrieve_study(connection, cache, _ct_study_uid())
    assert again[0].received == 20 and again[0].complete
    assert len(list(folder.glob("*.dcm"))) == 28 == done[0].instances
    assert not list(folder.glob(".partial-*"))


def _series_uid() -> str:
    return str(
        pydicom.dcmread(next(p for p in sample_files() if p.parent.name == "ct_0001")).SeriesInstanceUID
    )


def test_cache_evicts_least_recently_used_series_past_its_cap(orthanc, tmp_path):
    connection = connect(nodes_of(orthanc)["web"])
    chest = connection.find_studies(StudyQuery(patient_id="PH-CXR_0001"))[0].study_uid
    cache = StudyCache(tmp_path, 10**9)
    first = retrieve_study(connection, cache, chest)[0].folder
    size = sum(p.stat().st_size for p in first.glob("*.dcm"))
    cache.max_bytes = size + 1  # room for the chest film only
    ct = retrieve_study(connection, cache, _ct_study_uid())[0].folder
    assert not first.exists() and ct.exists()  # the just-retrieved series is kept over the cap


def test_wrong_called_ae_title_is_named(orthanc):
    node = DimseNode("pacs", "127.0.0.1", orthanc.dicom_port, "NOT_ORTHANC", VIEWER_AE, timeout=5)
    with pytest.raises(
        PacsError, match=r"pacs: query failed: .*(refused|aborted) the association.*'NOT_ORTHANC'"
    ) as caught:
        connect(node).find_studies(StudyQuery())
    # Orthanc rejects an unknown called AE title, but now and then aborts instead; a rejection is
    # final, an abort may be a busy server and is worth a retry.
    assert caught.value.transient == ("aborted" in str(caught.value))


def test_unknown_calling_ae_title_is_refused(orthanc):
    node = DimseNode("pacs", "127.0.0.1", orthanc.dicom_port, ORTHANC_AE, "STRANGER", timeout=5)
    with pytest.raises(PacsError, match="refused the association"):
        connect(node).echo()


def test_server_that_is_down_is_named(tmp_path):
    from tests.pacs.orthanc import free_port

    port = free_port()
    for node in (
        DimseNode("down", "127.0.0.1", port, "X", timeout=3),
        DicomWebNode("down", f"http://127.0.0.1:{port}/dicom-web", timeout=3),
    ):
        with pytest.raises(PacsError, match=r"down: echo failed: cannot (connect to|reach)") as caught:
            connect(node).echo()
        assert caught.value.transient


@pytest.fixture(scope="module")
def locked_orthanc(tmp_path_factory):
    server = start_orthanc(tmp_path_factory.mktemp("orthanc-auth"), users={"radiologist": "correct horse"})
    server.upload([p for p in sample_files() if p.parent.name != "ct_0001"])
    yield server
    server.stop()


def test_http_basic_authentication(locked_orthanc, monkeypatch):
    node = DicomWebNode(
        "locked", locked_orthanc.dicomweb, auth="basic", username="radiologist", password_env="LOCKED_PW"
    )
    monkeypatch.setenv("LOCKED_PW", "correct horse")
    assert len(connect(node).find_studies(StudyQuery())) == 2
    monkeypatch.setenv("LOCKED_PW", "wrong")
    with pytest.raises(
        PacsError, match="locked: query failed: HTTP 401: the server refused the credentials"
    ) as caught:
        connect(node).find_studies(StudyQuery())
    assert not caught.value.transient and "wrong" not in str(caught.value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_stopped_mid_retrieve_then_resumed(tmp_path, protocol):
    """A 120-slice series; the server is killed after 10 instances arrived. The cache keeps whole
    instances only, marks the series incomplete, and the retry (server back) fetches the rest."""
    from tests.pacs.perf_series import write_series

    server = start_orthanc(tmp_path / "orthanc")
    try:
        files = write_series(tmp_path / "series", 120, 256)
        server.upload(files)
        study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
        node = nodes_of(server)[protocol]
        cache = StudyCache(tmp_path / "cache", 10**10)

        def kill_after_ten(progress):
            if progress.instances == 10 and server.process is not None:
                server.kill()

        with pytest.raises(PacsError, match=f"{protocol}: retrieve failed") as caught:
            retrieve_study(connect(node), cache, study, on_progress=kill_after_ten)
        assert caught.value.transient
        folder = next((tmp_path / "cache").glob("*/*/*"))
        kept = list(folder.glob("*.dcm"))
        assert 10 <= len(kept) < 120 and not cache.state(folder).complete
        for path in kept:  # every instance there is whole
            assert pydicom.dcmread(path).PixelData
        server.start()  # same storage, same ports
        done = retrieve_study(connect(node), cache, study)
        assert done[0].complete and done[0].received == 120 - len(kept)
        assert _pixels_by_uid(folder.glob("*.dcm")) == _pixels_by_uid(files)
    finally:
        server.stop()
