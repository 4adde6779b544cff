"""Retrieval from servers that behave differently where the DICOM standard lets them: Orthanc
(transcodes, answers optional keys) and a pynetdicom archive (``archive``: sends only as stored,
answers only the required C-FIND keys). CT, CR, DX, MR and a multi-frame Enhanced MR in every
transfer syntax the viewer decodes that can be made here (``encoded``), by C-GET and C-MOVE: each
instance arrives, its pixels equal the original's (lossless syntaxes) or its stored bytes (lossy),
and the viewer opens every series. And each refusal names what was missing."""

from __future__ import annotations

import re

import numpy as np
import pydicom
import pytest
from pydicom import uid

from tests.pacs.archive import ARCHIVE_AE, Archive
from tests.pacs.encoded import make_study
from tests.pacs.orthanc import ORTHANC_AE, VIEWER_AE, free_port
from tests.pacs.servers import start_orthanc
from viewer.io import discover, load_series
from viewer.io.pacs import DimseNode, PacsError, StudyCache, connect, retrieve_study
from viewer.io.pacs.negotiation import (
    MAX_STORAGE_CONTEXTS,
    READABLE_CLASSES,
    classes_to_propose,
    decodable_syntaxes,
    server_choice,
    storage_rounds,
)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return make_study(tmp_path_factory.mktemp("encoded"))


@pytest.fixture(scope="module")
def scp_port():
    return free_port()


def _archive(folder, scp_port, **kwargs) -> Archive:
    return Archive(folder, destinations={VIEWER_AE: ("127.0.0.1", scp_port)}, **kwargs).start()


@pytest.fixture(scope="module")
def archive(made, scp_port, tmp_path_factory):
    server = _archive(tmp_path_factory.mktemp("archive"), scp_port)
    server.add(m.path for m in made)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stored_first_archive(made, scp_port, tmp_path_factory):
    """Proposes each instance's stored syntax first, then the uncompressed ones it cannot make."""
    server = _archive(tmp_path_factory.mktemp("archive-own-first"), scp_port, move_offer="own-first")
    server.add(m.path for m in made)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def conformance_orthanc(made, tmp_path_factory):
    server = start_orthanc(tmp_path_factory.mktemp("orthanc-conformance"))
    server.upload(m.path for m in made)
    yield server
    server.stop()


def _node(server, scp_port: int, move: bool) -> DimseNode:
    if isinstance(server, Archive):
        host_port, called = server.port, ARCHIVE_AE
    else:
        host_port, called, scp_port = server.dicom_port, ORTHANC_AE, server.scp_port
    return DimseNode("pacs", "127.0.0.1", host_port, called, VIEWER_AE, scp_port=scp_port if move else None,
                     timeout=10)  # fmt: skip


@pytest.mark.parametrize(
    ("server", "move"),
    [
        ("archive", False),
        ("archive", True),
        ("stored_first_archive", True),
        ("conformance_orthanc", False),
        ("conformance_orthanc", True),
    ],
    ids=["archive-C-GET", "archive-C-MOVE", "stored-first-archive-C-MOVE", "orthanc-C-GET", "orthanc-C-MOVE"],
)
def test_every_class_and_transfer_syntax_arrives_whole_and_opens(
    request, made, scp_port, tmp_path, server, move
):
    server = request.getfixturevalue(server)
    study = str(pydicom.dcmread(made[0].path, stop_before_pixels=True).StudyInstanceUID)
    done = retrieve_study(connect(_node(server, scp_port, move)), StudyCache(tmp_path, 10**9), study)
    assert all(s.complete for s in done) and sum(s.instances for s in done) == len(made)
    got = {}
    for series in done:
        for path in series.folder.glob("*.dcm"):
            got[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path
    for item in made:
        sent = pydicom.dcmread(item.path)
        back = pydicom.dcmread(got[str(sent.SOPInstanceUID)])
        what = f"{item.kind} in {uid.UID(item.syntax).name}"
        if isinstance(server, Archive) or back.file_meta.TransferSyntaxUID == item.syntax:
            assert back.file_meta.TransferSyntaxUID == item.syntax, what  # as stored
            assert back.PixelData == sent.PixelData, what
        if item.original is not None:  # lossless: the original pixels, however it travelled
            assert np.array_equal(back.pixel_array, item.original), what
    # The viewer opens every series: nothing refused, no file left out of its image.
    found = discover([s.folder for s in done])
    assert found.problems == []
    assert sum(len(s.records) for s in found.series) == len(made)
    for series in found.series:
        assert load_series(series).left_out == ()


def test_the_archive_answers_only_required_keys(archive, made):
    """What makes it a test of another behaviour: no SOP Class UID at the series or image level."""
    connection = connect(_node(archive, 0, False))
    study = str(pydicom.dcmread(made[0].path, stop_before_pixels=True).StudyInstanceUID)
    series = connection.find_series(study)
    assert {s.modality for s in series} >= {"CT", "CR", "DX", "MR"} and series[0].instance_count is None
    instances = connection.find_instances(study, series[0].series_uid)
    assert instances and all(i.sop_class == "" for i in instances)


def _one_instance(tmp_path, name: str, **changes):
    ds = pydicom.dcmread(pydicom.data.get_testdata_file(name))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid.generate_uid(), uid.generate_uid()
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path, str(ds.StudyInstanceUID)


def test_an_instance_of_a_class_beyond_the_first_contexts_comes_in_a_later_round(tmp_path, scp_port):
    """An ultrasound image in a series that says CT: the CT classes and those found anywhere fill
    the first association's 127 contexts; the image comes on a later one, asked for alone."""
    path, study = _one_instance(tmp_path, "US1_UNCR.dcm", Modality="CT")
    server = _archive(tmp_path / "archive", scp_port)
    try:
        server.add([path])
        (done,) = retrieve_study(
            connect(_node(server, scp_port, False)), StudyCache(tmp_path / "c", 10**9), study
        )
        assert done.complete and done.received == 1
        gets = [ds for kind, ds in server.requests if kind == "C-GET"]
        assert len(gets) >= 2 and gets[0].QueryRetrieveLevel == "SERIES"
        assert gets[-1].QueryRetrieveLevel == "IMAGE"
    finally:
        server.stop()


@pytest.mark.parametrize("sop_class_in_find", [False, True], ids=["class-unknown", "class-known"])
@pytest.mark.parametrize("move", [False, True], ids=["C-GET", "C-MOVE"])
def test_an_instance_in_a_syntax_the_viewer_does_not_decode_is_named(
    tmp_path, scp_port, move, sop_class_in_find
):
    # Labelled JPEG XL (1.2.840.10008.1.2.4.110), which no decoder here reads: stored, never sent.
    path, study = _one_instance(tmp_path, "MR_small_jpeg_ls_lossless.dcm")
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.110"
    ds.save_as(path, enforce_file_format=True)
    server = _archive(tmp_path / "archive", scp_port, sop_class_in_find=sop_class_in_find)
    try:
        server.add([path])
        connection = connect(_node(server, scp_port, move))
        with pytest.raises(PacsError) as caught:
            retrieve_study(connection, StudyCache(tmp_path / "c", 10**9), study)
    finally:
        server.stop()
    message = str(caught.value)
    assert "\n" not in message and not caught.value.transient
    # 0xA801 from pynetdicom's C-MOVE when the destination accepted none of its contexts.
    assert re.match(r"pacs: retrieve failed: 1 of 1 instance\(s\) not sent \(status 0xA(702|801) \(", message)
    if move:
        assert (
            "offered MR Image Storage only in JPEG XL Lossless, which the viewer does not decode" in message
        )
    elif sop_class_in_find:
        assert (
            f"none came in the {len(decodable_syntaxes())} transfer syntax(es) the server accepted for MR "
            in message
        )
    else:
        assert "the image-level query named no SOP Class UID" in message
        assert "it holds them in a SOP class or transfer syntax the viewer does not read" in message


def test_send_names_a_refused_presentation_context_and_keeps_the_syntax(tmp_path, scp_port):
    refused = uid.MRImageStorage
    server = _archive(tmp_path / "archive", scp_port, refuse=(refused,))
    try:
        connection = connect(_node(server, scp_port, False))
        ct = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
        ct.compress(uid.JPEG2000Lossless)
        connection.store([ct])
        assert server.stored[str(ct.SOPInstanceUID)].syntax == uid.JPEG2000Lossless  # as sent
        mr = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small_RLE.dcm"))
        with pytest.raises(PacsError) as caught:
            connection.store([mr])
    finally:
        server.stop()
    assert str(caught.value) == (
        "pacs: send failed: the server accepted no presentation context for MR Image Storage in "
        "RLE Lossless (it does not take that SOP class)"
    )


def test_storage_rounds_cover_every_readable_class_and_decodable_syntax():
    syntaxes = decodable_syntaxes()
    assert {uid.JPEG2000Lossless, uid.JPEGLSLossless, uid.JPEGLosslessSV1, uid.JPEGBaseline8Bit,
            uid.JPEGExtended12Bit, uid.RLELossless, uid.ImplicitVRLittleEndian} <= set(syntaxes)  # fmt: skip
    # No SOP class named by the query: every class the viewer reads, the series' modality first.
    rounds = storage_rounds(classes_to_propose(["", ""], "CT"))
    assert all(len(r) <= MAX_STORAGE_CONTEXTS for r in rounds) and len(rounds) > 1
    every = [pair for r in rounds for pair in r]
    assert len(every) == len(set(every)) == len(READABLE_CLASSES) * len(syntaxes)
    ct = {uid.CTImageStorage, uid.EnhancedCTImageStorage, uid.LegacyConvertedEnhancedCTImageStorage}
    assert {c for c, _ in rounds[0][: 3 * len(syntaxes)]} == ct
    # All named: only those, each in every syntax. Some named: those first, then the likely ones.
    named = classes_to_propose([uid.MRImageStorage, uid.MRImageStorage, uid.SegmentationStorage], "MR")
    assert storage_rounds(named) == [[(c, s) for c in named for s in syntaxes]]
    assert classes_to_propose(["", uid.UltrasoundImageStorage], "MR")[:2] == [
        uid.UltrasoundImageStorage,
        uid.MRImageStorage,
    ]


def test_the_storage_scp_takes_the_servers_first_choice_in_each_context():
    ours = decodable_syntaxes()
    jpeg_xl = "1.2.840.10008.1.2.4.110"
    offered = (uid.JPEG2000Lossless, uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian)
    assert server_choice(offered, ours) == uid.JPEG2000Lossless  # not Implicit VR, pynetdicom's own first
    assert server_choice((uid.RLELossless, uid.ImplicitVRLittleEndian), ours) == uid.RLELossless
    assert server_choice((jpeg_xl, uid.ExplicitVRLittleEndian), ours) == uid.ExplicitVRLittleEndian
    assert server_choice((jpeg_xl,), ours) is None
