"""Hostile PACS servers on loopback, each met through the command line as a user would: a URL with
credentials in it, a server that trickles, one that redirects elsewhere, one whose QIDO answer
names ``../..``, endless multipart answers, and an unreachable study among good files.

Every refusal is one line naming the server and the cause, exit status 1 or 2, no traceback; the
password never appears in any output or in any file the run wrote; nothing leaves the cache.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from tests.security.harness import HANG_S, assert_clean, assert_refused, run_cli
from viewer.resources import resource_path

PASSWORD = "Tr0ub4dor-5e3cr3t-7f1c"
STUDY = "1.2.826.0.1.3680043.10.1514.1"
SERIES = "1.2.826.0.1.3680043.10.1514.1.1"
SOP = "1.2.826.0.1.3680043.10.1514.1.1.1"


# --- fake servers ---------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    """An HTTP server on a free loopback port that counts the connections it accepted."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        super().__init__(("127.0.0.1", 0), handler)
        self.connections = 0
        self.stop = threading.Event()

    def process_request(self, request, client_address) -> None:
        self.connections += 1
        super().process_request(request, client_address)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def serving(answer: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[_Server]:
    """A server whose every GET is answered by ``answer(handler)``, for the length of the block."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the body ends when the connection closes

        def do_GET(self) -> None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
                answer(self)

        def log_message(self, *args) -> None:
            pass

    server = _Server(Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()


def _json(handler: BaseHTTPRequestHandler, items: list) -> None:
    body = json.dumps(items).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/dicom+json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _uid(tag: str, value: str) -> dict:
    return {tag: {"vr": "UI", "Value": [value]}}


def _qido(handler: BaseHTTPRequestHandler, series: str = SERIES, sop: str = SOP) -> bool:
    """A well-behaved QIDO-RS answer for the one study, series and instance; False for a request
    that is not a query (a WADO-RS retrieval)."""
    path = handler.path.split("?")[0]
    if path.endswith("/series"):
        _json(handler, [_uid("0020000E", series) | {"00080060": {"vr": "CS", "Value": ["CT"]}}])
    elif path.endswith("/instances"):
        _json(handler, [_uid("00080018", sop) | _uid("00080016", CTImageStorage)])
    elif path.endswith("/studies"):
        _json(handler, [_uid("0020000D", STUDY)])
    else:
        return False
    return True


def _instance(sop: str, size: int = 256) -> bytes:
    """A small whole CT instance of ``SERIES``, Part 10."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = STUDY, SERIES, "CT"
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.arange(size * size, dtype=np.uint16).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _multipart_head(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", 'multipart/related; type="application/dicom"; boundary=XYZ')
    handler.end_headers()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the user's side ------------------------------------------------------------------------------
@pytest.fixture
def home(tmp_path) -> Path:
    """The run's folders: ``config/pacs.toml`` (written by each test), ``cache`` and ``out``."""
    for name in ("config", "cache", "out", "xdg"):
        (tmp_path / name).mkdir()
    return tmp_path


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SALIENCY_VIEWER_PACS": str(home / "config" / "pacs.toml"),
        "XDG_CACHE_HOME": str(home / "xdg"),
        "XDG_CONFIG_HOME": str(home / "xdg"),
    }


def _config(home: Path, nodes: str = "") -> None:
    (home / "config" / "pacs.toml").write_text(f'[cache]\nfolder = "{home / "cache"}"\n\n{nodes}')


def _cli(home: Path, *args: str, timeout: float = 40.0, **env: str):
    return run_cli(list(args), env=_env(home) | env, cwd=home, timeout=timeout)


def _files_holding(root: Path, text: str) -> list[str]:
    """Every file under ``root`` whose bytes hold ``text``."""
    needle = text.encode()
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


# --- credentials ----------------------------------------------------------------------------------
def _answer_queries(handler: BaseHTTPRequestHandler) -> None:
    if not _qido(handler):
        handler.send_error(404)


def test_credentials_in_urls_are_refused_and_never_repeated(home, sentinel):
    film = str(resource_path("samples", "dicom", "cxr_0001.dcm"))
    run = str(home / "out" / "run")
    with serving(_answer_queries) as server:
        port = server.server_address[1]
        url = f"http://radiologist:{PASSWORD}@127.0.0.1:{port}/dicom-web/studies/{STUDY}"
        keyring = ("127.0.0.1", "credentials", "keyring")
        _config(home)
        for args, words in (
            (["pacs", "retrieve", url], keyring),
            (["info", url], keyring),
            (["explain", film, url, "--model", "cxr_resnet18", "--quiet", "--out", run],
             keyring),
            (["pacs", "send", url, film], keyring),
            (["explain", film, "--model", "cxr_resnet18", "--send-to", url, "--out", run],
             keyring),
            (["pacs", "retrieve", f"dimse://ARCHIVE:{PASSWORD}@127.0.0.1:{port}/{STUDY}"],
             ("dimse://ARCHIVE@127.0.0.1", "credentials", "AE title")),
        ):  # fmt: skip
            outcome = _cli(home, *args)
            assert_refused(outcome, *words, max_seconds=30)
            assert PASSWORD not in outcome.output, outcome.describe()
        assert server.connections == 0  # refused before any connection

        # The same password inside a node's URL in pacs.toml: every command refuses the file.
        _config(home, f'[nodes.archive]\ndicomweb = "http://radiologist:{PASSWORD}@127.0.0.1:{port}/x"\n')
        for args in (["pacs", "nodes"], ["pacs", "echo", "archive"], ["info", f"pacs://archive/{STUDY}"]):
            outcome = _cli(home, *args)
            assert_refused(outcome, "archive", "credentials", "pacs login archive", max_seconds=30)
            assert PASSWORD not in outcome.output, outcome.describe()
        assert server.connections == 0
    (home / "config" / "pacs.toml").unlink()  # the attack input itself: the only file that may hold it
    assert _files_holding(home, PASSWORD) == []


# --- a trickling server ---------------------------------------------------------------------------
def _trickle(handler: BaseHTTPRequestHandler) -> None:
    """Headers at once, then one byte of the body every 2 s: no read ever times out. It ends
    (unfinished) after 30 s, so that a client without a deadline fails its test instead of hanging."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/dicom+json")
    handler.end_headers()
    handler.wfile.write(b"[")
    for _ in range(15):
        if handler.server.stop.wait(2.0):
            return
        handler.wfile.write(b" ")
        handler.wfile.flush()


def test_a_trickling_dicomweb_server_is_given_up_at_the_nodes_deadline(home):
    with serving(_trickle) as server:
        _config(home, f'[nodes.slow]\ndicomweb = "{server.base}/dicom-web"\ntimeout = 5\ndeadline = 4\n')
        start = time.monotonic()
        outcome = _cli(home, "pacs", "query", "slow")
        assert_refused(outcome, "slow: query failed", "4 s", "deadline", max_seconds=20)
        assert time.monotonic() - start < HANG_S


def test_the_deadline_ends_a_trickling_https_answer_too(tmp_path):
    """Over TLS the socket read is another one (and ``http.client`` lets go of it once an answer
    that ends with the connection has begun): the deadline must end that read as well. In this
    process: the CLI would trust only the system's authorities, not this test's."""
    import ssl

    from tests.pacs.certificates import make_pki
    from viewer.io.pacs import DicomWebNode, PacsError, StudyQuery, connect

    pki = make_pki(tmp_path / "pki")
    with serving(_trickle) as server:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        port = server.server_address[1]
        connection = connect(
            DicomWebNode("slow", f"https://127.0.0.1:{port}/dicom-web", timeout=5, deadline=3)
        )
        connection._client._session.verify = str(pki.ca)  # the test's authority
        start = time.monotonic()
        with pytest.raises(PacsError, match=r"slow: query failed: .* did not finish within the 3 s deadline"):
            connection.find_studies(StudyQuery())
        assert time.monotonic() - start < HANG_S
        connection.close()


def test_a_trickling_dimse_server_is_given_up_at_the_nodes_deadline(home):
    """A C-FIND that answers one pending match every second, for ever: each message comes well
    within the DIMSE timeout, so only the overall deadline ends it."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    stop = threading.Event()

    def endless(event):
        for number in range(1, 120):
            if stop.wait(1.0) or event.assoc.is_aborted:
                return
            match = pydicom.Dataset()
            match.QueryRetrieveLevel, match.StudyInstanceUID = "STUDY", f"{STUDY}.{number}"
            yield 0xFF00, match
        yield 0x0000, None

    scp = AE(ae_title="SLOWPACS")
    scp.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    port = _free_port()
    server = scp.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_FIND, endless)])
    try:
        _config(
            home,
            f'[nodes.slow]\nhost = "127.0.0.1"\nport = {port}\ncalled_ae = "SLOWPACS"\ntimeout = 5\n'
            "deadline = 4\n",
        )
        outcome = _cli(home, "pacs", "query", "slow")
        assert_refused(outcome, "slow: query failed", "4 s", "deadline", max_seconds=20)
    finally:
        stop.set()
        server.shutdown()


# --- a redirect to another server -----------------------------------------------------------------
def test_a_redirect_to_another_server_is_refused_and_not_followed(home):
    with serving(_answer_queries) as elsewhere:

        def redirect(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(302)
            handler.send_header("Location", elsewhere.base + handler.path)
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        with serving(redirect) as server:
            _config(home, f'[nodes.moved]\ndicomweb = "{server.base}/dicom-web"\n')
            host, other = server.base.removeprefix("http://"), elsewhere.base.removeprefix("http://")
            outcome = _cli(home, "pacs", "query", "moved")
            assert_refused(outcome, "moved: query failed", "redirect", host, other, max_seconds=20)
            url = f"{server.base}/dicom-web/studies/{STUDY}"
            outcome = _cli(home, "pacs", "retrieve", url)
            assert_refused(outcome, "redirect", host, other, max_seconds=20)
            assert server.connections >= 2
    assert elsewhere.connections == 0
    assert not any((home / "cache").rglob("*.dcm"))


# --- UIDs that are paths --------------------------------------------------------------------------
def test_uids_from_a_server_that_are_not_uids_are_refused_by_name(home, sentinel):
    escape = os.path.relpath(sentinel, home / "cache" / "0123456789abcdef" / STUDY)  # ../../../sentinel

    def hostile(handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?")[0]
        if path.endswith("/studies"):
            _json(handler, [_uid("0020000D", "../..")])
        elif path.endswith("/series"):
            _json(handler, [_uid("0020000E", escape)])
        else:
            handler.send_error(404)

    with serving(hostile) as server:
        _config(home, f'[nodes.evil]\ndicomweb = "{server.base}/dicom-web"\n')
        outcome = _cli(home, "pacs", "query", "evil")
        assert_refused(outcome, "evil: query failed", "'../..'", "not a DICOM UID", max_seconds=20)
        outcome = _cli(home, "pacs", "retrieve", "evil", STUDY)
        assert_refused(outcome, "evil: ", escape, "not a DICOM UID", max_seconds=20)
        outcome = _cli(home, "info", f"{server.base}/dicom-web/studies/{STUDY}")
        assert_refused(outcome, "evil: series query failed", escape, "not a DICOM UID", max_seconds=20)
    assert not any((home / "cache").rglob("*.dcm"))


# --- endless answers ------------------------------------------------------------------------------
def test_an_endless_instance_stops_at_the_instance_budget(home):
    """One multipart part that never ends: read no further than the node's per-instance budget,
    or by default the viewer's budget for one file (which a larger instance could not be opened in)."""

    def endless(handler: BaseHTTPRequestHandler) -> None:
        if _qido(handler):
            return
        _multipart_head(handler)
        handler.wfile.write(b"--XYZ\r\nContent-Type: application/dicom\r\n\r\n")
        block = bytes(1 << 20)
        while not handler.server.stop.is_set():
            handler.wfile.write(block)

    with serving(endless) as server:
        _config(home, f'[nodes.endless]\ndicomweb = "{server.base}/dicom-web"\nmax_instance_mb = 16\n')
        outcome = _cli(home, "pacs", "retrieve", "endless", STUDY)
        assert_refused(outcome, "endless: retrieve failed", "16 MB", "max_instance_mb", max_seconds=30,
                       max_rss=1024**3)  # fmt: skip
        _config(home, f'[nodes.endless]\ndicomweb = "{server.base}/dicom-web"\n')
        outcome = _cli(home, "pacs", "retrieve", "endless", STUDY, SALIENCY_VIEWER_LOAD_BYTES="24M")
        assert_refused(outcome, "endless: retrieve failed", "24 MB", "SALIENCY_VIEWER_LOAD_BYTES",
                       max_seconds=30, max_rss=1024**3)  # fmt: skip
    assert not any((home / "cache").rglob("*.dcm"))


def test_endless_instances_stop_at_the_study_budget(home):
    """Whole instances, one after another, for ever (none of them listed): the study's budget ends
    it, and the cache holds no more than that."""

    def endless(handler: BaseHTTPRequestHandler) -> None:
        if _qido(handler):
            return
        _multipart_head(handler)
        number = 0
        while not handler.server.stop.is_set():
            number += 1
            handler.wfile.write(b"\r\n--XYZ\r\nContent-Type: application/dicom\r\n\r\n")
            handler.wfile.write(_instance(f"{SOP}.{number}"))

    with serving(endless) as server:
        _config(home, f'[nodes.endless]\ndicomweb = "{server.base}/dicom-web"\nmax_study_mb = 2\n')
        outcome = _cli(home, "pacs", "retrieve", "endless", STUDY)
        assert_refused(outcome, "endless: retrieve failed", "2 MB", "max_study_mb", max_seconds=30)
    cached = sum(p.stat().st_size for p in (home / "cache").rglob("*.dcm"))
    assert cached <= 2 * 1024**2


# --- one study that fails among good ones ---------------------------------------------------------
def test_an_unreachable_study_url_is_a_problem_and_the_run_goes_on(home):
    film = home / "films" / "cxr_0001.dcm"
    film.parent.mkdir()
    shutil.copy(resource_path("samples", "dicom", "cxr_0001.dcm"), film)
    port = _free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}/dicom-web/studies/{STUDY}"
    _config(home)
    out = home / "out" / "run"
    outcome = _cli(home, "explain", url, str(film.parent), "--model", "cxr_resnet18", "--methods", "gradcam",
                   "--steps", "0", "--quiet", "--out", str(out), timeout=120)  # fmt: skip
    assert_clean(outcome, max_seconds=120)
    assert outcome.returncode == 0, outcome.describe()  # the CLI's way with a study it could not do
    named = [line for line in outcome.stderr.splitlines() if url in line]
    assert len(named) == 1 and f"127.0.0.1:{port}" in named[0] and "cannot reach" in named[0], (
        outcome.describe()
    )
    with open(out / "metrics.csv", newline="") as f:
        assert [row["image"] for row in csv.DictReader(f)] == ["cxr_0001"]
    with open(out / "problems.csv", newline="") as f:
        (problem,) = list(csv.DictReader(f))
    assert problem["source"] == url and "cannot reach" in problem["reason"]

    # info goes on the same way: the URL is said, the local film listed.
    outcome = _cli(home, "info", url, str(film.parent), timeout=60)
    assert_clean(outcome, max_seconds=60)
    assert outcome.returncode == 0 and "cxr_0001" in outcome.stdout, outcome.describe()
    assert any(url in line and "cannot reach" in line for line in outcome.stderr.splitlines())


# --- what the guards must not break -----------------------------------------------------------------
def test_a_busy_server_is_asked_three_times_in_all():
    """429/408/503/504 are asked again (the session does it, not the library, whose retrying
    would repeat a refused redirect too): twice busy then an answer succeeds; always busy fails."""
    from viewer.io.pacs import DicomWebNode, PacsError, StudyQuery, connect

    busy = {"left": 2}

    def answer(handler: BaseHTTPRequestHandler) -> None:
        if busy["left"] > 0:
            busy["left"] -= 1
            handler.send_error(503)
        else:
            _qido(handler)

    with serving(answer) as server:
        connection = connect(DicomWebNode("busy", f"{server.base}/dicom-web", timeout=5))
        assert [s.study_uid for s in connection.find_studies(StudyQuery())] == [STUDY]
        assert server.connections == 3
        busy["left"] = 10
        with pytest.raises(PacsError, match="busy: query failed: HTTP 503") as caught:
            connection.find_studies(StudyQuery())
        assert caught.value.transient and server.connections == 6
        connection.close()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"http://u:{PASSWORD}@h:8042/dicom-web/studies/{STUDY}", f"http://h:8042/dicom-web/studies/{STUDY}"),
        (f"https://u:pa/ss@w{PASSWORD}@h/studies/{STUDY}", f"https://h/studies/{STUDY}"),  # "/" and "@" in it
        (f"pacs://{PASSWORD}@web/{STUDY}", f"pacs://web/{STUDY}"),
        (f"dimse://AE:{PASSWORD}@h:104/{STUDY}", f"dimse://AE@h:104/{STUDY}"),
    ],
)
def test_a_url_with_credentials_is_refused_and_shown_without_them(url, shown):
    from viewer.io.pacs import ConfigError, PacsConfig, parse_study_url
    from viewer.io.pacs.urls import redacted

    assert redacted(url) == shown
    with pytest.raises(ConfigError, match="credentials in the URL are refused") as caught:
        parse_study_url(url, PacsConfig())
    assert str(caught.value).startswith(shown + ": ") and PASSWORD not in str(caught.value)
