"""Retrieval over DIMSE: C-GET in rounds of storage contexts, or C-MOVE to the viewer's own storage
SCP (``negotiation`` says what each proposes and accepts), and a refusal that names what was
missing: the SOP class, the transfer syntax or the presentation context.

A C-GET proposes, for the SOP classes of the instances (else the classes the viewer reads, those
of the series' modality first), one presentation context per transfer syntax the viewer decodes,
with SCP/SCU role selection. An instance the server could not send in what was accepted is a
failed sub-operation (0xA702 when all fail, 0xB000 when some do); the next round, on a new
association with the next contexts, asks for only the instances still missing. The rounds stop
when everything arrived, when a round had no failed sub-operation (another would not help), or
when the contexts run out: then the refusal says what the server accepted and what it did not.

Works on a ``dimse.DimseConnection`` (its associations, deadline and TLS) without importing it.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable

from pydicom import Dataset

from viewer.io.pacs.negotiation import (
    Pair,
    classes_to_propose,
    decodable_syntaxes,
    name,
    names,
    server_choice,
    status_text,
    storage_rounds,
)
from viewer.io.pacs.nodes import PacsError
from viewer.io.pacs.query import InstanceMatch, identifier

_PENDING = (0xFF00, 0xFF01)
_SUCCESS, _WARNING, _SUBOPS_FAILED, _DESTINATION_UNKNOWN = 0x0000, 0xB000, 0xA702, 0xA801
# C-STORE statuses a storage SCP answers with (PS3.4 Annex B).
_STORED, _CANNOT_UNDERSTAND, _REFUSED = 0x0000, 0xC000, 0xA700


class Receiver:
    """The viewer as storage SCP during one retrieval: what arrived (kept or not), what the sink
    refused, and, for C-MOVE, the contexts the server proposed that the viewer could not take."""

    def __init__(self, connection, sink: Callable[[bytes], None]):
        self.node = connection.node
        self.sink = sink
        self.received: set[str] = set()
        self.failures: list[Exception] = []
        self.refused: list[tuple[str, tuple[str, ...], int]] = []  # (class, syntaxes, result)
        self.associations = 0
        self._proposed: dict[int, dict[int, tuple[str, tuple[str, ...]]]] = {}
        self._lock = threading.Lock()
        self._allowed = addresses(self.node.host) if self.node.scp_port else None

    def _from_node(self, assoc) -> bool:
        return self._allowed is None or assoc.requestor.address in self._allowed

    def stopped(self) -> bool:
        """The sink asked for no more (a cancellation, a budget): not a refusal of one file."""
        return any(not isinstance(e, ValueError | OSError) for e in self.failures)

    def on_store(self, event) -> int:
        if not self._from_node(event.assoc):
            return _REFUSED  # only the node itself may push into the cache
        with self._lock:
            self.received.add(str(event.request.AffectedSOPInstanceUID))
        if self.stopped():
            return _REFUSED  # cancelled: refuse the rest quickly
        try:
            self.sink(event.encoded_dataset())
        except Exception as exc:  # raised again by fetch, off the network thread
            self.failures.append(exc)
            if isinstance(exc, PacsError):  # over a budget: nothing more is wanted
                event.assoc.abort()
            return _CANNOT_UNDERSTAND
        return _STORED

    def on_requested(self, event) -> None:
        """C-MOVE SCP, before negotiation: each context the server proposes narrowed to its own
        first choice among the syntaxes the viewer decodes (``negotiation.server_choice``)."""
        if not self._from_node(event.assoc):
            return
        ours = decodable_syntaxes()
        proposed = {}
        for cx in event.assoc.requestor.requested_contexts:
            offered = tuple(str(s) for s in cx.transfer_syntax)
            proposed[cx.context_id] = (str(cx.abstract_syntax), offered)
            choice = server_choice(offered, ours)
            if choice is not None:
                cx.transfer_syntax = [choice]
        with self._lock:
            self._proposed[id(event.assoc)] = proposed

    def on_accepted(self, event) -> None:
        if not self._from_node(event.assoc):
            return
        with self._lock:
            self.associations += 1
            proposed = self._proposed.pop(id(event.assoc), {})
            for cx in event.assoc.rejected_contexts:
                abstract, syntaxes = proposed.get(cx.context_id, (str(cx.abstract_syntax), ()))
                self.refused.append((abstract, syntaxes, int(cx.result or 0)))

    def finish(self) -> None:
        """Raise what the sink raised (its own signal first), or one line for refused files."""
        for exc in self.failures:
            if not isinstance(exc, ValueError | OSError):
                raise exc  # the sink's own signal (a cancellation, a budget), as from any other protocol
        if self.failures:
            raise PacsError(
                self.node.name, "retrieve", f"{len(self.failures)} instance(s) not kept: {self.failures[0]}"
            )


def fetch(
    connection,
    study_uid: str,
    series_uid: str,
    instances: list[InstanceMatch],
    sink: Callable[[bytes], None],
    *,
    whole_series: bool,
    modality: str = "",
) -> None:
    """``instances`` into ``sink`` by C-MOVE when the node has an ``scp_port``, else by C-GET."""
    receiver = Receiver(connection, sink)
    keys = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid}
    try:
        if connection.node.scp_port:
            _move(connection, keys, instances, receiver, whole_series)
        else:
            _get(connection, keys, instances, receiver, whole_series, modality)
    except PacsError:
        if not any(isinstance(exc, PacsError) for exc in receiver.failures):
            raise  # else the association was aborted for the reason the sink gave
    receiver.finish()


def _identifier(keys: dict[str, str], wanted: list[str], *, whole_series: bool) -> Dataset:
    if whole_series:
        return identifier("SERIES", keys, ())
    return identifier("IMAGE", {**keys, "SOPInstanceUID": "\\".join(wanted)}, ())


class _Round:
    """What one retrieve association ended with."""

    def __init__(self) -> None:
        self.code = _SUCCESS
        self.failed = 0
        self.accepted: set[Pair] = set()  # storage contexts with the viewer as SCP
        self.refused: set[Pair] = set()  # rejected, or accepted without the SCP role


def _get(connection, keys, instances, receiver: Receiver, whole_series: bool, modality: str) -> None:
    net, node = connection._net, connection.node
    model = connection._sop.StudyRootQueryRetrieveInformationModelGet
    known = all(i.sop_class for i in instances)
    rounds = storage_rounds(classes_to_propose([i.sop_class for i in instances], modality))
    handlers = [(net.evt.EVT_C_STORE, receiver.on_store)]
    done: list[_Round] = []
    for index, pairs in enumerate(rounds):
        wanted = [i.sop_uid for i in instances if i.sop_uid not in receiver.received]
        if not wanted:
            return
        ae = connection._ae()
        ae.add_requested_context(model)
        for pair in pairs:
            ae.add_requested_context(*pair)
        roles = [net.build_role(c, scp_role=True) for c in dict.fromkeys(c for c, _ in pairs)]
        ds = _identifier(keys, wanted, whole_series=whole_series and index == 0)
        with connection._association("retrieve", ae, ext_neg=roles, evt_handlers=handlers) as assoc:
            outcome = _Round()
            for cx in assoc.accepted_contexts:
                if cx.abstract_syntax != model:
                    pair = (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
                    (outcome.accepted if cx.as_scp else outcome.refused).add(pair)
            outcome.refused |= {
                (str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.rejected_contexts
            }
            _statuses(connection, assoc.send_c_get(ds, model), assoc, outcome)
        done.append(outcome)
        if receiver.stopped() or not (outcome.failed or outcome.code == _SUBOPS_FAILED):
            break  # nothing failed for want of a context: another round would bring nothing more
    missing = [i for i in instances if i.sop_uid not in receiver.received]
    last = done[-1] if done else _Round()
    if missing and (last.failed or last.code == _SUBOPS_FAILED) and not receiver.stopped():
        raise PacsError(
            node.name,
            "retrieve",
            f"{len(missing)} of {len(instances)} instance(s) not sent (status {status_text(last.code)}): "
            + _get_reason(missing, done, known, len(rounds)),
        )


def _get_reason(missing: list[InstanceMatch], done: list[_Round], known: bool, rounds: int) -> str:
    accepted = set().union(*(r.accepted for r in done))
    proposed = {p for r in done for p in r.accepted | r.refused}
    if not known:
        classes = {c for c, _ in proposed}
        return (
            f"the server sent them in none of the {len(proposed)} presentation contexts the viewer "
            f"proposed ({len(classes)} storage SOP classes x {len(decodable_syntaxes())} transfer "
            f"syntaxes, {rounds} association(s); the image-level query named no SOP Class UID), "
            f"{len(accepted)} of which it accepted: it holds them in a SOP class or transfer syntax "
            "the viewer does not read, and does not convert"
        )
    reasons = []
    for sop_class in dict.fromkeys(i.sop_class for i in missing):
        taken = [s for c, s in sorted(accepted) if c == sop_class]
        if not taken:
            reasons.append(
                f"the server accepted no presentation context for {name(sop_class)} with the viewer "
                f"as storage SCP (SCP/SCU role selection) in any of the {len(decodable_syntaxes())} "
                "transfer syntaxes proposed"
            )
        else:
            reasons.append(
                f"none came in the {len(taken)} transfer syntax(es) the server accepted for "
                f"{name(sop_class)} ({names(taken)}): it holds them in a transfer syntax the viewer "
                "does not decode, and does not convert"
            )
    return "; ".join(reasons)


def _statuses(connection, responses, assoc, outcome: _Round, receiver: Receiver | None = None) -> None:
    node = connection.node
    for status, _ in responses:
        code = connection._check("retrieve", status, assoc)
        if code in _PENDING:
            continue
        outcome.code = code
        outcome.failed = int(status.get("NumberOfFailedSuboperations", 0) or 0)
        if code == _DESTINATION_UNKNOWN and receiver is not None and receiver.refused:
            # Some servers (pynetdicom's among them) say so when the destination took none of the
            # contexts they proposed: it is known, it connected; what it refused is the reason.
            return
        if code == _DESTINATION_UNKNOWN:
            raise PacsError(
                node.name,
                "retrieve",
                f"the server does not know the move destination {node.calling_ae!r} "
                f"(add it to its modalities with this computer's address and port {node.scp_port})",
            )
        if code not in (_SUCCESS, _WARNING, _SUBOPS_FAILED):
            raise PacsError(node.name, "retrieve", f"answered status {status_text(code)}")


def _move(connection, keys, instances, receiver: Receiver, whole_series: bool) -> None:
    net, node = connection._net, connection.node
    model = connection._sop.StudyRootQueryRetrieveInformationModelMove
    scp = connection._ae()
    for context in net.AllStoragePresentationContexts:
        scp.add_supported_context(context.abstract_syntax, decodable_syntaxes())
    bind = "127.0.0.1" if addresses(node.host) <= {"127.0.0.1", "::1"} else ""
    handlers = [
        (net.evt.EVT_C_STORE, receiver.on_store),
        (net.evt.EVT_REQUESTED, receiver.on_requested),
        (net.evt.EVT_ACCEPTED, receiver.on_accepted),
    ]
    tls = connection._tls(ssl.Purpose.CLIENT_AUTH)
    try:
        server = scp.start_server((bind, node.scp_port), block=False, evt_handlers=handlers, ssl_context=tls)
    except OSError as exc:
        raise PacsError(
            node.name, "retrieve", f"cannot listen on port {node.scp_port}: {exc.strerror}"
        ) from None
    outcome = _Round()
    try:
        ae = connection._ae()
        ae.add_requested_context(model)
        ds = _identifier(keys, [i.sop_uid for i in instances], whole_series=whole_series)
        with connection._association("retrieve", ae) as assoc:
            _statuses(connection, assoc.send_c_move(ds, node.calling_ae, model), assoc, outcome, receiver)
    finally:
        server.shutdown()
    missing = [i for i in instances if i.sop_uid not in receiver.received]
    failed = outcome.failed or outcome.code in (_SUBOPS_FAILED, _DESTINATION_UNKNOWN)
    if failed and missing and not receiver.stopped():
        raise PacsError(
            node.name,
            "retrieve",
            f"{len(missing)} of {len(instances)} instance(s) not sent (status {status_text(outcome.code)}): "
            + _move_reason(receiver),
        )


def _move_reason(receiver: Receiver) -> str:
    node = receiver.node
    if receiver.refused:
        unread = [(c, s) for c, s, result in receiver.refused if result == 0x04]
        classes = [c for c, _, result in receiver.refused if result != 0x04]
        parts = []
        if unread:
            syntaxes = [t for _, s in unread for t in s]
            parts.append(
                f"the server offered {names(c for c, _ in unread)} only in {names(syntaxes)}, "
                "which the viewer does not decode, so its storage SCP refused those presentation contexts"
            )
        if classes:
            parts.append(f"the viewer's storage SCP does not take SOP class {names(classes)}")
        return "; ".join(parts)
    if not receiver.associations:
        return (
            f"the server opened no association to the viewer's storage SCP on port {node.scp_port} "
            f"(does it know {node.calling_ae!r} by this computer's address and that port?)"
        )
    return (
        "the viewer's storage SCP accepted every presentation context the server proposed, so the "
        "sub-operations failed on the server's side"
    )


def addresses(host: str) -> set[str]:
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return {host}
