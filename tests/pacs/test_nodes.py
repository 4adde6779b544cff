"""Node configuration, secrets and study URLs: no server needed."""

from __future__ import annotations

import pytest

from viewer.io.pacs import (
    ConfigError,
    DicomWebNode,
    DimseNode,
    PacsConfig,
    PacsError,
    load_config,
    parse_server_url,
    parse_study_url,
)
from viewer.io.pacs.cache import StudyCache, check_uid
from viewer.io.pacs.nodes import save_config, secret

STUDY = "1.2.826.0.1.3680043.10.1514.330669414488385194796437057404556567"
SERIES = "1.2.826.0.1.3680043.10.1514.731342822986750596963408928637732348"


def test_config_round_trip_keeps_every_node_and_no_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHIVE_PASSWORD", "s3cret-value")
    config = PacsConfig(
        {
            "archive-web": DicomWebNode(
                "archive-web", "https://pacs.example.org/dicom-web", qido_prefix="qido", auth="basic",
                username="radiologist", password_env="ARCHIVE_PASSWORD",
            ),
            "archive": DimseNode("archive", "pacs.example.org", 104, "ARCHIVE", scp_port=11113),
        },
        tmp_path / "cache",
        5,
    )  # fmt: skip
    path = save_config(config, tmp_path / "pacs.toml")
    text = path.read_text()
    assert "s3cret-value" not in text and "ARCHIVE_PASSWORD" in text
    assert load_config(path) == config
    assert secret(config.nodes["archive-web"]) == "s3cret-value"
    assert secret(config.nodes["archive"]) is None  # DIMSE: AE titles, no password


def test_a_password_in_the_file_is_refused_with_the_way_to_store_it(tmp_path):
    path = tmp_path / "pacs.toml"
    path.write_text(
        '[nodes.a]\ndicomweb = "http://h/dicom-web"\nauth = "basic"\nusername = "u"\npassword = "x"\n'
    )
    with pytest.raises(ConfigError, match="pacs login a"):
        load_config(path)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[nodes.a]\nport = 104\n", "needs either dicomweb"),
        ('[nodes.a]\nhost = "h"\nport = 104\ncalled_ae = "A\\\\B"\n', "called_ae"),
        ('[nodes.a]\nhost = "h"\nport = 70000\ncalled_ae = "A"\n', "port number"),
        ('[nodes.a]\ndicomweb = "ftp://h"\n', "http"),
        ('[nodes.a]\ndicomweb = "http://h"\nwado = "x"\n', "unknown key"),
        ('[nodes.a]\nhost = "h"\ncalled_ae = "A"\n', "port"),
        ("[nodes", "pacs.toml"),
    ],
)
def test_bad_entries_name_the_file_and_the_key(tmp_path, body, message):
    path = tmp_path / "pacs.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_secret_says_where_to_put_it(monkeypatch):
    monkeypatch.delenv("NO_SUCH_VARIABLE", raising=False)
    node = DicomWebNode("x", "http://h/dicom-web", auth="bearer", password_env="NO_SUCH_VARIABLE")
    with pytest.raises(PacsError, match=r"\$NO_SUCH_VARIABLE is not set.*pacs login x"):
        secret(node)


def test_study_urls_of_each_kind():
    web = DicomWebNode("web", "http://127.0.0.1:8042/dicom-web", auth="basic", username="u")
    config = PacsConfig({"web": web})
    here = parse_study_url(f"http://127.0.0.1:8042/dicom-web/studies/{STUDY}/series/{SERIES}", config)
    assert here.node is web and (here.study_uid, here.series_uid) == (STUDY, SERIES)  # its credentials
    other = parse_study_url(f"https://other.org/wado/rs/studies/{STUDY}", config)
    assert other.node.address() == "https://other.org/wado/rs" and other.node.auth is None
    dimse = parse_study_url(f"dimse://ORTHANC@10.0.0.5:4242/{STUDY}?calling=ME&scp_port=11113", config)
    node = dimse.node
    assert (node.host, node.port, node.called_ae, node.calling_ae, node.scp_port) == (
        "10.0.0.5",
        4242,
        "ORTHANC",
        "ME",
        11113,
    )
    assert parse_study_url(f"pacs://web/{STUDY}/{SERIES}", config).series_uid == SERIES
    for bad, message in [
        (f"pacs://nowhere/{STUDY}", "no PACS node 'nowhere'"),
        ("dimse://10.0.0.5:4242/1.2", "CALLED_AE@HOST:PORT"),
        (f"dimse://A@h:1/{STUDY}?colling=X", "unknown option"),
        ("http://h/dicom-web/studies/1.2/../../etc", "studies"),
        ("pacs://web/1..2", "not a DICOM UID"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_study_url(bad, config)


def test_server_urls_to_send_to():
    """``--send-to`` and ``pacs send`` take a server: a DICOMweb root (STOW-RS posts under it),
    a DIMSE address without a study, a node, or a study URL's server; credentials still refused."""
    web = DicomWebNode("web", "http://127.0.0.1:8042/dicom-web", auth="basic", username="u")
    config = PacsConfig({"web": web})
    assert parse_server_url("http://127.0.0.1:8042/dicom-web/", config) is web  # its credentials
    assert parse_server_url(f"http://127.0.0.1:8042/dicom-web/studies/{STUDY}", config) is web
    assert parse_server_url("http://127.0.0.1:8042/dicom-web/studies", config) is web
    other = parse_server_url("https://other.org:8443/wado/rs", config)
    assert other.address() == "https://other.org:8443/wado/rs" and other.auth is None
    assert parse_server_url("http://pacs.example.org", config).address() == "http://pacs.example.org"
    dimse = parse_server_url("dimse://ORTHANC@10.0.0.5:4242?calling=ME", config)
    assert (dimse.host, dimse.port, dimse.called_ae, dimse.calling_ae) == ("10.0.0.5", 4242, "ORTHANC", "ME")
    assert parse_server_url("pacs://web", config) is web
    for bad, message in [
        ("http://radiologist:hunter2@127.0.0.1:8042/dicom-web", "credentials in the URL are refused"),
        ("https://radiologist@other.org/dicom-web", "credentials in the URL are refused"),
        ("dimse://AE:hunter2@h:104", "credentials in the URL are refused"),
        ("http://h/dicom-web?access_token=abc", "takes no query"),
        ("pacs://nowhere", "no PACS node 'nowhere'"),
        ("dimse://10.0.0.5:4242", "CALLED_AE@HOST:PORT"),
    ]:
        with pytest.raises(ConfigError, match=message) as caught:
            parse_server_url(bad, config)
        assert "hunter2" not in str(caught.value) and "abc" not in str(caught.value)


def test_cache_refuses_uids_that_would_leave_it(tmp_path):
    for bad in ("../../etc", "1.2/3", "", "1." * 40):
        with pytest.raises(ValueError, match="not a DICOM UID"):
            check_uid(bad)
    cache = StudyCache(tmp_path, 10**6)
    folder = cache.series_folder(DimseNode("n", "h", 1, "A"), STUDY, SERIES)
    assert folder.is_relative_to(tmp_path) and folder.name == SERIES
