"""A DICOMweb node through ``dicomweb-client``: QIDO-RS queries, WADO-RS retrieval, STOW-RS sending.

Every exchange goes through ``http_guard``'s session: within the node's ``deadline`` (a query with
all its pages, a series retrieved in one answer, each instance retrieved on its own, a send), within
byte budgets (an answer to a query: ``QUERY_ANSWER_MB``; a retrieval: ``nodes.instance_budget``
per instance, ``nodes.study_budget`` in all), and never redirected to another server. Every UID a
server answers with is checked before it is used (``query``).
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pydicom import Dataset
from pydicom.errors import InvalidDicomError

from viewer.io.pacs.http_guard import MB, Budget, Deadline, DeadlinePassed, Refusal, guarded_session
from viewer.io.pacs.nodes import (
    DicomWebNode,
    PacsError,
    checked_answer,
    instance_budget,
    secret,
    study_budget,
)
from viewer.io.pacs.query import (
    INSTANCE_KEYS,
    SERIES_KEYS,
    STUDY_KEYS,
    InstanceMatch,
    SeriesMatch,
    StudyMatch,
    StudyQuery,
    wildcard_match,
)

# Ask for each instance as stored (any transfer syntax): the pixel data arrives byte for byte.
_AS_STORED = (("application/dicom", "*"),)
# The most a query's answer may hold, all its pages together: 500 studies' attributes are about
# 1 MB, a 10 000-instance series' instance list about 3 MB.
QUERY_ANSWER_MB = 64


def _import():
    try:
        import requests
        from dicomweb_client.api import DICOMwebClient
    except ImportError:
        raise PacsError(
            "DICOMweb", "connection", "needs dicomweb-client: pip install 'saliency-viewer[pacs]'"
        ) from None
    log = logging.getLogger("dicomweb_client")
    if log.level == logging.NOTSET:  # it logs the server's Warning headers; failures are said here
        log.setLevel(logging.ERROR)
    return requests, DICOMwebClient


class DicomWebConnection:
    """One node's QIDO/WADO/STOW endpoints, with its credentials (read now, kept only in the
    HTTP session)."""

    def __init__(self, node: DicomWebNode):
        requests, DICOMwebClient = _import()
        self.node = node
        self._requests = requests
        self._deadline = Deadline(node.deadline)
        self._budget = Budget()
        session = guarded_session(requests, node.address(), self._deadline, self._budget)
        password = secret(node)
        if node.auth == "basic":
            session.auth = (node.username or "", password or "")
        elif node.auth == "bearer":
            session.headers["Authorization"] = f"Bearer {password}"
        self._client = DICOMwebClient(
            node.address(),
            session=session,
            qido_url_prefix=node.qido_prefix,
            wado_url_prefix=node.wado_prefix,
            stow_url_prefix=node.stow_prefix,
            timeout=node.timeout,
        )
        # The session retries 429/408/503/504 itself (3 tries); the library's retrying would also
        # repeat a refused redirect or a passed deadline.
        self._client.set_http_retry_params(retry=False)

    def close(self) -> None:
        self._client._session.close()

    @contextmanager
    def _operation(self, name: str, *, retrieval: bool = False) -> Iterator[None]:
        """Library and HTTP failures as a ``PacsError`` naming the node and ``name``; the deadline
        and the byte budget start afresh."""
        node = self.node
        if retrieval:
            (part, part_note), (total, total_note) = instance_budget(node), study_budget(node)
            self._budget.start(part, total, part_note, total_note)
        else:
            limit = QUERY_ANSWER_MB * MB
            self._budget.start(
                limit, limit, "the most a query's answer may hold", "the most a query's answer may hold"
            )
        self._deadline.start()
        try:
            yield
        except DeadlinePassed:
            raise PacsError(node.name, name, self._too_slow()) from None
        except Refusal as exc:  # over a budget, or a redirect elsewhere
            raise PacsError(node.name, name, str(exc)) from None
        except (
            self._requests.exceptions.RequestException,
            TimeoutError,
            ValueError,
            OSError,
            InvalidDicomError,
        ) as exc:
            if self._deadline.passed:  # the read the deadline cut short, whatever it raised
                raise PacsError(node.name, name, self._too_slow()) from None
            raise self._failure(name, exc) from None
        finally:
            self._deadline.stop()

    def _too_slow(self) -> str:
        return self._deadline.reason(self.node.address())

    def _failure(self, name: str, exc: Exception) -> PacsError:
        requests, node = self._requests, self.node
        if isinstance(exc, requests.exceptions.HTTPError):
            status = getattr(exc.response, "status_code", 0) or 0
            return PacsError(node.name, name, _http_reason(exc.response), transient=status >= 500)
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return PacsError(node.name, name, f"{node.address()} did not answer (timed out)", transient=True)
        if isinstance(exc, requests.exceptions.ConnectionError):
            text = str(exc)
            if "Connection refused" in text or "NewConnectionError" in text or "Name or service" in text:
                reason = f"cannot reach {node.address()} (is the server running?)"
            else:  # dropped mid-transfer
                reason = f"the connection to {node.address()} broke off"
            return PacsError(node.name, name, reason, transient=True)
        if isinstance(exc, requests.exceptions.Timeout | TimeoutError):
            return PacsError(
                node.name, name, f"{node.address()} stopped answering (timed out)", transient=True
            )
        if isinstance(exc, requests.exceptions.RequestException):
            return PacsError(node.name, name, " ".join(str(exc).split())[:300])
        # A malformed or truncated multipart answer, or a part that is not DICOM.
        return PacsError(
            node.name, name, f"the server's answer is malformed: {str(exc)[:200]}", transient=True
        )

    def echo(self) -> None:
        with self._operation("echo"):
            self._client.search_for_studies(limit=1)

    def find_studies(self, query: StudyQuery) -> list[StudyMatch]:
        keys = query.keys()
        # "^" cannot go literally (the HTTP library encodes it, and Orthanc does not decode it):
        # the server matches a wildcard in its place, and the exact name is matched here.
        exact = {k: v for k, v in keys.items() if "^" in v}
        sent = {k: v.replace("^", "*") for k, v in keys.items()}
        with self._operation("query"):
            found = self._client.search_for_studies(
                limit=query.limit if not exact else None, fields=list(STUDY_KEYS), search_filters=sent,
                fuzzymatching=False,
            )  # fmt: skip
        with checked_answer(self.node.name, "query"):
            matches = [Dataset.from_json(item) for item in found]
            for keyword, pattern in exact.items():
                matches = [ds for ds in matches if wildcard_match(pattern, str(ds.get(keyword, "")))]
            return [StudyMatch.from_dataset(ds) for ds in matches[: query.limit]]

    def find_series(self, study_uid: str) -> list[SeriesMatch]:
        with self._operation("series query"):
            found = self._client.search_for_series(study_uid, fields=list(SERIES_KEYS))
        with checked_answer(self.node.name, "series query"):
            return [SeriesMatch.from_dataset(Dataset.from_json(item), study_uid) for item in found]

    def find_instances(self, study_uid: str, series_uid: str) -> list[InstanceMatch]:
        """Every instance of the series, page after page (a server may answer a few at a time)
        until a page brings nothing new: the library's own paging asks again for as long as pages
        come, which a server that ignores ``offset`` makes endless."""
        found: dict[str, InstanceMatch] = {}
        with self._operation("instance query"):
            while True:
                page = self._client.search_for_instances(
                    study_uid, series_uid, fields=list(INSTANCE_KEYS), offset=len(found) or None
                )
                with checked_answer(self.node.name, "instance query"):
                    matches = [
                        InstanceMatch.from_dataset(Dataset.from_json(i), study_uid, series_uid) for i in page
                    ]
                new = {m.sop_uid: m for m in matches if m.sop_uid not in found}
                if not new:
                    return list(found.values())
                found.update(new)

    def fetch(
        self,
        study_uid: str,
        series_uid: str,
        instances: list[InstanceMatch],
        sink: Callable[[bytes], None],
        *,
        whole_series: bool,
    ) -> None:
        """``instances`` to ``sink`` as Part-10 bytes, as they arrive; the ``whole_series`` is
        streamed in one multipart answer, else each instance is asked for on its own (each then
        has the whole deadline)."""
        with self._operation("retrieve", retrieval=True), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the library's about a server that sends one part bare
            if whole_series:
                for ds in self._client.iter_series(study_uid, series_uid, media_types=_AS_STORED):
                    sink(_part10(ds))
            else:
                for item in instances:
                    self._deadline.start()
                    ds = self._client.retrieve_instance(
                        study_uid, series_uid, item.sop_uid, media_types=_AS_STORED
                    )
                    sink(_part10(ds))

    def store(self, datasets: list[Dataset]) -> None:
        with self._operation("send"):
            answer = self._client.store_instances(datasets)
        failed = answer.get("FailedSOPSequence") if answer is not None else None
        if failed:
            reasons = sorted({str(item.get("FailureReason", "?")) for item in failed})
            raise PacsError(
                self.node.name,
                "send",
                f"the server refused {len(failed)} instance(s) (reason {', '.join(reasons)})",
            )


def _part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _http_reason(response) -> str:
    status = getattr(response, "status_code", None)
    if status in (401, 403):
        return f"HTTP {status}: the server refused the credentials"
    if status == 404:
        return "HTTP 404: not found on the server"
    if status is not None and status >= 500:
        return f"HTTP {status}: the server failed ({response.reason})"
    return f"HTTP {status} {getattr(response, 'reason', '')}".strip()
