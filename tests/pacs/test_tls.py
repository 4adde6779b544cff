"""DICOM TLS against a real Orthanc that speaks nothing else and requires a client certificate:
echo, query, C-GET and C-MOVE over TLS, and each way it can be refused, named."""

from __future__ import annotations

import pytest

from tests.pacs.certificates import make_pki
from tests.pacs.orthanc import ORTHANC_AE, VIEWER_AE
from tests.pacs.servers import sample_files, start_orthanc
from viewer.io.pacs import ConfigError, DimseNode, PacsError, StudyCache, StudyQuery, connect, retrieve_study


@pytest.fixture(scope="module")
def tls_orthanc(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    pki = make_pki(folder / "pki")
    server = start_orthanc(folder / "orthanc", pki=pki)
    server.upload(sample_files())  # over HTTP: only the DICOM port is TLS
    yield server, pki
    server.stop()


def _node(server, pki, **changes) -> DimseNode:
    fields = dict(
        name="secure", host="127.0.0.1", port=server.dicom_port, called_ae=ORTHANC_AE, calling_ae=VIEWER_AE,
        timeout=10, tls=True, tls_ca=str(pki.ca), tls_cert=str(pki.client_cert), tls_key=str(pki.client_key),
    )  # fmt: skip
    node = DimseNode(**{**fields, **changes})
    node.check()
    return node


@pytest.mark.parametrize("move", [False, True], ids=["C-GET", "C-MOVE"])
def test_query_and_retrieve_over_tls(tls_orthanc, tmp_path, move):
    server, pki = tls_orthanc
    node = _node(server, pki, scp_port=server.scp_port if move else None)
    connection = connect(node)
    connection.echo()
    (ct,) = connection.find_studies(StudyQuery(modality="CT"))
    assert ct.instance_count == 28
    (done,) = retrieve_study(connection, StudyCache(tmp_path, 10**9), ct.study_uid)
    assert done.complete and len(list(done.folder.glob("*.dcm"))) == 28


def test_plain_dimse_to_a_tls_port_is_named(tls_orthanc):
    server, _ = tls_orthanc
    plain = DimseNode("plain", "127.0.0.1", server.dicom_port, ORTHANC_AE, VIEWER_AE, timeout=5)
    with pytest.raises(PacsError, match=r"^plain: echo failed: 127\.0\.0\.1:\d+ aborted the association"):
        connect(plain).echo()


def test_a_server_certificate_from_another_authority_is_not_trusted(tls_orthanc, tmp_path):
    server, pki = tls_orthanc
    other = make_pki(tmp_path / "other", "Someone else's CA")
    with pytest.raises(PacsError, match="TLS: the server's certificate is not trusted") as caught:
        connect(_node(server, pki, tls_ca=str(other.ca))).echo()
    # OpenSSL's reason, as the README shows it.
    assert "(self-signed certificate in certificate chain)" in str(caught.value)
    assert not caught.value.transient


def test_without_a_client_certificate_the_server_refuses(tls_orthanc):
    server, pki = tls_orthanc
    node = _node(server, pki, tls_cert=None, tls_key=None)
    with pytest.raises(PacsError, match=r"aborted the association \(if it requires a client certificate"):
        connect(node).echo()


def test_certificate_settings_are_checked(tls_orthanc, tmp_path):
    server, pki = tls_orthanc
    with pytest.raises(ConfigError, match="tls_ca is set but tls is not"):
        _node(server, pki, tls=False)
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        _node(server, pki, tls_key=None)
    with pytest.raises(ConfigError, match="C-MOVE over TLS"):
        _node(server, pki, scp_port=11113, tls_cert=None, tls_key=None)
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(PacsError, match=f"secure: TLS failed: cannot read tls_ca {missing}: no such file"):
        connect(_node(server, pki, tls_ca=str(missing))).echo()


def test_tls_in_a_study_url_and_in_pacs_toml(tls_orthanc, tmp_path):
    from viewer.io.pacs import PacsConfig, load_config, parse_study_url
    from viewer.io.pacs.nodes import save_config

    server, pki = tls_orthanc
    url = f"dimse://{ORTHANC_AE}@127.0.0.1:{server.dicom_port}/1.2.3?calling={VIEWER_AE}&tls=1"
    location = parse_study_url(url, PacsConfig())
    assert location.node.tls and location.node.tls_ca is None
    # The system's authorities do not know the test's: said so, not a bare abort.
    with pytest.raises(PacsError, match="the server's certificate is not trusted"):
        connect(location.node).echo()
    with pytest.raises(ConfigError, match="tls is 0 or 1"):
        parse_study_url(url.replace("tls=1", "tls=yes"), PacsConfig())
    node = _node(server, pki, scp_port=server.scp_port)
    path = save_config(PacsConfig({"secure": node}), tmp_path / "pacs.toml")
    assert "tls = true" in path.read_text()
    assert load_config(path).nodes["secure"] == node
    connect(load_config(path).nodes["secure"]).echo()
