"""A PACS built from pynetdicom for the tests, behaving unlike Orthanc where the standard lets it.

- It keeps what it receives as it received it (C-STORE, or ``add``), and never transcodes: a C-GET
  sub-operation goes out only over a presentation context accepted in the file's own transfer
  syntax (not even Implicit <-> Explicit VR, which pynetdicom would otherwise do), else it fails
  (status 0xA702 when all do, 0xB000 when some do), as PS3.4 C.4.3.3 lets a server do.
- For C-MOVE it proposes, to the destination, one presentation context per (SOP class, stored
  transfer syntax) with only that syntax (``move_offer="own"``), or with the stored syntax first
  and Explicit and Implicit VR Little Endian after it (``"own-first"``: a server that would
  decompress if it could, but cannot, so only the first is of use).
- It answers C-FIND with the unique and required keys of each level only (PS3.4 C.6.2.1, Study
  Root: STUDY: Study Date, Study Time, Accession Number, Patient's Name, Patient ID, Study ID;
  SERIES: Modality, Series Number; IMAGE: Instance Number), so no SOP Class UID at the series or
  the image level (both optional there), no counts, no descriptions.
"""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom import Dataset

from tests.pacs.orthanc import free_port

ARCHIVE_AE = "ARCHIVE"
_REQUIRED = {
    "STUDY": ("StudyDate", "StudyTime", "AccessionNumber", "PatientName", "PatientID", "StudyID"),
    "SERIES": ("Modality", "SeriesNumber"),
    "IMAGE": ("InstanceNumber",),
}
_UNIQUE = {"STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}
_LEVELS = ("STUDY", "SERIES", "IMAGE")


@dataclass(frozen=True)
class Stored:
    path: Path
    header: Dataset  # without pixel data
    sop_class: str
    syntax: str


class Archive:
    """``start()`` / ``stop()``; ``add(paths)`` stores files as if received. ``destinations``: the
    move destinations it knows, AE title -> (host, port)."""

    def __init__(self, folder: Path, *, destinations: dict[str, tuple[str, int]] | None = None,
                 move_offer: str = "own", sop_class_in_find: bool = False,
                 refuse: tuple[str, ...] = ()):  # fmt: skip
        self.folder = Path(folder)
        self.port = free_port()
        self.destinations = dict(destinations or {})
        self.move_offer = move_offer
        self.sop_class_in_find = sop_class_in_find  # answer the (optional) SOP Class UID at IMAGE level
        self.refuse = refuse  # storage SOP classes it does not take
        self.stored: dict[str, Stored] = {}
        self.requests: list[tuple[str, Dataset]] = []  # ("C-GET" | "C-MOVE", identifier)
        self._lock = threading.Lock()
        self._server = None

    # -- storage -----------------------------------------------------------------------------

    def add(self, paths) -> None:
        for path in paths:
            self._keep(Path(path).read_bytes())

    def _keep(self, data: bytes) -> Stored:
        self.folder.mkdir(parents=True, exist_ok=True)
        header = pydicom.dcmread(BytesIO(data), stop_before_pixels=True)
        uid = str(header.SOPInstanceUID)
        path = self.folder / f"{uid}.dcm"
        path.write_bytes(data)
        stored = Stored(path, header, str(header.SOPClassUID), str(header.file_meta.TransferSyntaxUID))
        with self._lock:
            self.stored[uid] = stored
        return stored

    # -- the server --------------------------------------------------------------------------

    def start(self) -> Archive:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import (
            StudyRootQueryRetrieveInformationModelFind,
            StudyRootQueryRetrieveInformationModelGet,
            StudyRootQueryRetrieveInformationModelMove,
            Verification,
        )

        ae = AE(ae_title=ARCHIVE_AE)
        ae.require_called_aet = True
        ae.maximum_pdu_size = 0
        for model in (
            Verification,
            StudyRootQueryRetrieveInformationModelFind,
            StudyRootQueryRetrieveInformationModelGet,
            StudyRootQueryRetrieveInformationModelMove,
        ):
            ae.add_supported_context(model)
        for context in AllStoragePresentationContexts:  # to receive, and to send by C-GET
            if context.abstract_syntax in self.refuse:
                continue
            ae.add_supported_context(
                context.abstract_syntax, ALL_TRANSFER_SYNTAXES, scu_role=True, scp_role=True
            )
        handlers = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_GET, self._on_get),
            (evt.EVT_C_MOVE, self._on_move),
        ]
        self._server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _on_store(self, event) -> int:
        self._keep(event.encoded_dataset())
        return 0x0000

    def _matches(self, identifier: Dataset) -> list[Stored]:
        level = str(identifier.get("QueryRetrieveLevel", ""))
        found = []
        with self._lock:
            stored = list(self.stored.values())
        for item in stored:
            if all(_match(identifier, keyword, item.header) for keyword in _matching_keys(identifier)):
                found.append(item)
        if level not in _LEVELS:
            return []
        seen, unique = set(), []
        for item in found:  # one match per entity of the level
            key = str(item.header.get(_UNIQUE[level]))
            if key not in seen:
                seen.add(key)
                unique.append(item)
        return unique

    def _on_find(self, event):
        identifier = event.identifier
        level = str(identifier.get("QueryRetrieveLevel", ""))
        if level not in _LEVELS:
            yield 0xA900, None
            return
        for item in self._matches(identifier):
            if event.is_cancelled:
                yield 0xFE00, None
                return
            answer = Dataset()
            answer.QueryRetrieveLevel = level
            for at in _LEVELS[: _LEVELS.index(level) + 1]:
                setattr(answer, _UNIQUE[at], item.header.get(_UNIQUE[at]))
            for keyword in _REQUIRED[level]:
                if keyword in identifier:  # a required key is returned when asked for
                    setattr(answer, keyword, item.header.get(keyword, ""))
            if level == "IMAGE" and self.sop_class_in_find and "SOPClassUID" in identifier:
                answer.SOPClassUID = item.sop_class
            yield 0xFF00, answer

    def _instances(self, identifier: Dataset) -> list[Stored]:
        level = str(identifier.get("QueryRetrieveLevel", ""))
        entities = {str(getattr(m.header, _UNIQUE[level], "")) for m in self._matches(identifier)}
        with self._lock:
            stored = list(self.stored.values())
        return [s for s in stored if str(s.header.get(_UNIQUE[level], "")) in entities]

    def _on_get(self, event):
        self.requests.append(("C-GET", event.identifier))
        _no_conversion(event.assoc)
        instances = self._instances(event.identifier)
        yield len(instances)
        for item in instances:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, pydicom.dcmread(item.path)

    def _on_move(self, event):
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
        from pynetdicom import build_context

        self.requests.append(("C-MOVE", event.identifier))
        destination = self.destinations.get(str(event.move_destination).strip())
        if destination is None:
            yield None, None
            return
        instances = self._instances(event.identifier)
        pairs = sorted({(s.sop_class, s.syntax) for s in instances})
        if self.move_offer == "own":
            contexts = [build_context(c, [t]) for c, t in pairs]
        else:
            contexts = [
                build_context(c, list(dict.fromkeys([t, ExplicitVRLittleEndian, ImplicitVRLittleEndian])))
                for c, t in pairs
            ]
        yield destination[0], destination[1], {"contexts": contexts[:128]}
        yield len(instances)
        for item in instances:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, pydicom.dcmread(item.path)


def _no_conversion(assoc) -> None:
    """Sub-operations on ``assoc`` only over a context in the dataset's own transfer syntax.
    pynetdicom converts between uncompressed syntaxes where it finds no exact match; a server that
    sends only what it stores does not (the test's point), so its choice is made strict here."""
    choose = assoc._get_valid_context

    def strict(ab_syntax, tr_syntax, role=None, context_id=None, allow_conversion=True):
        return choose(ab_syntax, tr_syntax, role, context_id, allow_conversion=False)

    assoc._get_valid_context = strict


def _matching_keys(identifier: Dataset) -> list[str]:
    keys = []
    for element in identifier:
        keyword = element.keyword
        if keyword in ("QueryRetrieveLevel", "SpecificCharacterSet") or not keyword:
            continue
        if element.value not in (None, "", b"") and str(element.value) != "":
            keys.append(keyword)
    return keys


def _match(identifier: Dataset, keyword: str, header: Dataset) -> bool:
    wanted = identifier[keyword].value
    have = str(header.get(keyword, ""))
    if keyword.endswith("UID"):
        values = wanted if isinstance(wanted, list | tuple) or type(wanted).__name__ == "MultiValue" else \
            str(wanted).split("\\")  # fmt: skip
        return have in {str(v) for v in values}
    if keyword.endswith("Date") and "-" in str(wanted):
        low, high = str(wanted).split("-", 1)
        return (not low or have >= low) and (not high or have <= high)
    text = str(wanted)
    if "*" in text or "?" in text:
        return fnmatch.fnmatchcase(have.upper(), text.upper())
    return have == text
