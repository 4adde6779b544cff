"""A DIMSE node through ``pynetdicom``: C-ECHO, C-FIND, C-GET or C-MOVE, C-STORE.

Each operation opens its own association, so a dropped one costs only that operation. C-MOVE
sends the instances to a storage SCP the viewer runs on ``scp_port`` for the length of the move;
it takes them only from the node's own host. What each proposes and accepts (SOP classes, transfer
syntaxes, roles) is ``negotiation``'s; retrieval itself is ``dimse_retrieve``'s. With ``tls``
every association is DICOM TLS (PS3.15 B.1): the server's certificate is checked against
``tls_ca`` (else the system's CAs) and its host name, and the viewer shows its own certificate
where it has one (the C-MOVE SCP needs it).

pynetdicom's timeouts (``timeout``: ACSE, DIMSE and network) are per message: a server that answers
a C-FIND with one match every few seconds, or a C-GET with one instance, never trips them. The
node's ``deadline`` bounds each association as a whole: when it passes, the association is aborted.
A C-FIND answer is also bounded in matches (``MAX_MATCHES``), and every UID in it is checked.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydicom import Dataset

from viewer.io.pacs.nodes import DimseNode, PacsError, checked_answer
from viewer.io.pacs.query import (
    INSTANCE_KEYS,
    SERIES_KEYS,
    STUDY_KEYS,
    InstanceMatch,
    SeriesMatch,
    StudyMatch,
    StudyQuery,
    identifier,
)

_PENDING = (0xFF00, 0xFF01)
_SUCCESS = 0x0000
# Uncompressed little-endian syntaxes, which pynetdicom converts between when sending.
_CONVERTIBLE = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
# The most matches one C-FIND may answer: a series of 20 000 instances is already rare.
MAX_MATCHES = 100_000


def _pynetdicom():
    try:
        import pynetdicom
        from pynetdicom import sop_class
    except ImportError:
        raise PacsError(
            "DIMSE", "connection", "needs pynetdicom: pip install 'saliency-viewer[pacs]'"
        ) from None
    log = logging.getLogger("pynetdicom")
    if log.level == logging.NOTSET:  # its errors become ours, with the node named; no double report
        log.setLevel(logging.CRITICAL)
    return pynetdicom, sop_class


class DimseConnection:
    def __init__(self, node: DimseNode):
        self._net, self._sop = _pynetdicom()
        self.node = node
        self._modalities: dict[tuple[str, str], str] = {}

    def close(self) -> None:
        pass  # associations are per operation

    def _tls(self, purpose: ssl.Purpose) -> ssl.SSLContext | None:
        """The TLS context for connecting to the node (``SERVER_AUTH``) or for the C-MOVE SCP
        it connects to (``CLIENT_AUTH``); None without TLS."""
        node = self.node
        if not node.tls:
            return None
        for key in ("tls_ca", "tls_cert", "tls_key"):
            path = _path(getattr(node, key))
            if path is not None and not Path(path).is_file():
                raise PacsError(node.name, "TLS", f"cannot read {key} {path}: no such file")
        try:
            context = ssl.create_default_context(purpose, cafile=_path(node.tls_ca))
            if node.tls_cert:
                context.load_cert_chain(_path(node.tls_cert), _path(node.tls_key))
        except (OSError, ssl.SSLError) as exc:
            # Unreadable, or not a certificate or key in PEM form.
            raise PacsError(node.name, "TLS", f"cannot use the certificate files: {exc}") from None
        if purpose is ssl.Purpose.CLIENT_AUTH:
            context.verify_mode = ssl.CERT_REQUIRED  # only a server that proves who it is may push
        return context

    def _ae(self):
        ae = self._net.AE(ae_title=self.node.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.node.timeout
        ae.connection_timeout = min(self.node.timeout, 15.0)
        return ae

    @contextmanager
    def _association(self, operation: str, ae, **kwargs) -> Iterator[object]:
        node = self.node
        tls = self._tls(ssl.Purpose.SERVER_AUTH)
        if tls is not None:
            kwargs["tls_args"] = (tls, node.host)
        assoc = ae.associate(node.host, node.port, ae_title=node.called_ae, **kwargs)
        if not assoc.is_established:
            transient = not assoc.is_rejected
            handshake = _handshake_failure(node, tls) if tls is not None and not assoc.is_rejected else None
            if handshake:
                reason, transient = handshake, False
            elif assoc.rejected_contexts and not assoc.accepted_contexts:  # pynetdicom then aborts
                reason, transient = _none_accepted(ae.requested_contexts, assoc.rejected_contexts), False
            elif assoc.is_rejected:
                reason = f"{node.host}:{node.port} refused the association ({_titles_hint(node)})"
            elif _reachable(node.host, node.port, node.timeout):
                reason = f"{node.host}:{node.port} aborted the association"
                if node.tls and not node.tls_cert:  # TLS 1.3 refuses a missing one after the handshake
                    reason += " (if it requires a client certificate: set tls_cert and tls_key)"
                else:  # some servers (Orthanc under load among them) abort where they would reject
                    reason += f" ({_titles_hint(node)})"
            else:
                reason = f"cannot connect to {node.host}:{node.port} (is the server running?)"
            raise PacsError(node.name, operation, reason, transient=transient)
        passed = threading.Event()

        def expire() -> None:
            passed.set()
            assoc.abort()
            with contextlib.suppress(AttributeError):  # wake a wait for the next message at once
                assoc.dimse.msg_queue.put((None, None))

        timer = threading.Timer(node.deadline, expire)
        timer.daemon = True
        timer.start()
        try:
            yield assoc
        except PacsError:
            if passed.is_set():
                raise PacsError(
                    node.name,
                    operation,
                    f"{node.host}:{node.port} did not finish within the {node.deadline:g} s deadline "
                    "(the node's deadline in pacs.toml)",
                ) from None
            raise
        finally:
            timer.cancel()
            if assoc.is_established:
                assoc.release()

    def _check(self, operation: str, status: Dataset, assoc) -> int:
        """The status code of a response; raises when there is none (the peer stopped answering)."""
        if not status or "Status" not in status:
            if assoc.is_aborted:
                reason = "the server aborted the association"
            else:
                reason = "no answer from the server (timed out, or the connection dropped)"
            raise PacsError(self.node.name, operation, reason, transient=True)
        return int(status.Status)

    def echo(self) -> None:
        ae = self._ae()
        ae.add_requested_context(self._sop.Verification)
        with self._association("echo", ae) as assoc:
            code = self._check("echo", assoc.send_c_echo(), assoc)
        if code != _SUCCESS:
            raise PacsError(self.node.name, "echo", f"answered status 0x{code:04X}")

    def _find(self, operation: str, ds: Dataset) -> list[Dataset]:
        model = self._sop.StudyRootQueryRetrieveInformationModelFind
        ae = self._ae()
        ae.add_requested_context(model)
        found = []
        with self._association(operation, ae) as assoc:
            for status, match in assoc.send_c_find(ds, model):
                code = self._check(operation, status, assoc)
                if code in _PENDING:
                    if match is not None:
                        found.append(match)
                    if len(found) > MAX_MATCHES:
                        assoc.abort()
                        raise PacsError(
                            self.node.name, operation, f"the server answered more than {MAX_MATCHES} matches"
                        )
                elif code != _SUCCESS:
                    raise PacsError(self.node.name, operation, f"answered status 0x{code:04X}")
        return found

    def find_studies(self, query: StudyQuery) -> list[StudyMatch]:
        found = self._find("query", identifier("STUDY", query.keys(), STUDY_KEYS))
        with checked_answer(self.node.name, "query"):
            return [StudyMatch.from_dataset(ds) for ds in found[: query.limit]]

    def find_series(self, study_uid: str) -> list[SeriesMatch]:
        found = self._find("series query", identifier("SERIES", {"StudyInstanceUID": study_uid}, SERIES_KEYS))
        with checked_answer(self.node.name, "series query"):
            series = [SeriesMatch.from_dataset(ds, study_uid) for ds in found]
        # Modality is required at the series level: it orders the storage contexts of a C-GET
        # whose instances' SOP classes the server does not say (``negotiation.likely_classes``).
        self._modalities.update({(study_uid, s.series_uid): s.modality for s in series})
        return series

    def find_instances(self, study_uid: str, series_uid: str) -> list[InstanceMatch]:
        keys = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid}
        found = self._find("instance query", identifier("IMAGE", keys, INSTANCE_KEYS))
        with checked_answer(self.node.name, "instance query"):
            return [InstanceMatch.from_dataset(ds, study_uid, series_uid) for ds in found]

    def fetch(
        self,
        study_uid: str,
        series_uid: str,
        instances: list[InstanceMatch],
        sink: Callable[[bytes], None],
        *,
        whole_series: bool,
    ) -> None:
        """``instances`` (the ``whole_series`` at SERIES level, else by their SOP Instance UIDs)
        by C-MOVE when the node has an ``scp_port``, else by C-GET; each goes to ``sink`` as
        Part-10 bytes as it arrives (``dimse_retrieve``)."""
        from viewer.io.pacs.dimse_retrieve import fetch

        modality = self._modalities.get((study_uid, series_uid), "")
        fetch(self, study_uid, series_uid, instances, sink, whole_series=whole_series, modality=modality)

    def store(self, datasets: list[Dataset]) -> None:
        """C-STORE each dataset in its own SOP class and transfer syntax (an uncompressed one may go
        in the other uncompressed little-endian syntax, which pynetdicom converts to)."""
        ae = self._ae()
        for sop_class, syntax in sorted(
            {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets}
        ):
            syntaxes = [syntax]
            if syntax in _CONVERTIBLE:
                syntaxes += [s for s in _CONVERTIBLE if s != syntax]
            ae.add_requested_context(sop_class, syntaxes)
        with self._association("send", ae) as assoc:
            for ds in datasets:
                try:
                    status = assoc.send_c_store(ds)
                except ValueError:  # pynetdicom: no accepted context for it
                    raise PacsError(self.node.name, "send", _store_refusal(ds, assoc)) from None
                code = self._check("send", status, assoc)
                if code != _SUCCESS and not 0xB000 <= code <= 0xBFFF:  # B: stored with a warning
                    raise PacsError(
                        self.node.name, "send", f"refused {ds.SOPInstanceUID}: status 0x{code:04X}"
                    )


def _none_accepted(proposed, rejected) -> str:
    """Why an association failed whose every presentation context the server rejected."""
    from viewer.io.pacs.negotiation import names

    results = {int(cx.result or 0) for cx in rejected}
    why = {0x03: "it does not take that SOP class", 0x04: "it does not take that transfer syntax"}
    return (
        f"the server accepted no presentation context for {names(cx.abstract_syntax for cx in proposed)} "
        f"in {names(s for cx in proposed for s in cx.transfer_syntax)} "
        f"({why.get(results.pop(), 'no reason given') if len(results) == 1 else 'no reason given'})"
    )


def _store_refusal(ds: Dataset, assoc) -> str:
    """Why ``ds`` cannot be sent on ``assoc``: the presentation context the server did not accept."""
    from viewer.io.pacs.negotiation import name, names

    sop_class, syntax = str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)
    taken = [str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts if cx.abstract_syntax == sop_class]
    if taken:
        return (
            f"the server accepted {name(sop_class)} only in {names(taken)}, not in {name(syntax)} "
            f"({ds.SOPInstanceUID} is stored so)"
        )
    return (
        f"the server accepted no presentation context for {name(sop_class)} in {name(syntax)} "
        "(it does not take that SOP class)"
    )


def _path(text: str | None) -> str | None:
    return str(Path(text).expanduser()) if text else None


def _handshake_failure(node: DimseNode, context: ssl.SSLContext) -> str | None:
    """Why a TLS handshake with the node fails (pynetdicom only says the association was not
    made); None when it succeeds or the node cannot be reached at all."""
    try:
        raw = socket.create_connection((node.host, node.port), timeout=min(node.timeout, 5.0))
        with raw, context.wrap_socket(raw, server_hostname=node.host):
            return None
    except ssl.SSLCertVerificationError as exc:
        return f"TLS: the server's certificate is not trusted ({exc.verify_message})"
    except ssl.SSLError as exc:
        return f"TLS handshake with {node.host}:{node.port} failed ({exc.reason or exc})"
    except OSError:
        return None


def _titles_hint(node: DimseNode) -> str:
    return f"is {node.called_ae!r} its AE title, and does it know this viewer as {node.calling_ae!r}?"


def _reachable(host: str, port: int, timeout: float) -> bool:
    # pynetdicom reports a refused connection and an aborted association alike; tell them apart.
    try:
        socket.create_connection((host, port), timeout=min(timeout, 5.0)).close()
        return True
    except OSError:
        return False
