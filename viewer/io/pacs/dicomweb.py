"""A DICOMweb node through ``dicomweb-client``: QIDO-RS queries, WADO-RS retrieval, STOW-RS sending."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pydicom import Dataset

from viewer.io.pacs.nodes import DicomWebNode, PacsError, secret
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


def _import():
    try:
        import requests
        from dicomweb_client.api import DICOMwebClient
    except ImportError:
        raise PacsError(
            "DICOMweb", "connection", "needs dicomweb-client: pip install 'saliency-viewer[pacs]'"
        ) from None
    return requests, DICOMwebClient


def _session(requests):
    class LiteralWildcards(requests.Session):
        """Sends ``*`` in query values as itself: Orthanc (1.10, Debian 12) matches the values
        without percent-decoding them, so ``PatientName=DOE%2A`` finds nothing; servers that
        decode read a literal ``*`` the same (RFC 3986 allows it in a query)."""

        def send(self, request, **kwargs):
            if "?" in (request.url or ""):
                head, _, query = request.url.partition("?")
                request.url = head + "?" + query.replace("%2A", "*")
            return super().send(request, **kwargs)

    return LiteralWildcards()


class DicomWebConnection:
    """One node's QIDO/WADO/STOW endpoints, with its credentials (read now, kept only in the
    HTTP session)."""

    def __init__(self, node: DicomWebNode):
        requests, DICOMwebClient = _import()
        self.node = node
        self._requests = requests
        session = _session(requests)
        session.trust_env = False  # no proxy from the environment: only the configured server
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
        # 429/408/503/504 are retried by the library: 3 tries, 0.5 s then 1 s apart.
        self._client.set_http_retry_params(max_attempts=3, wait_exponential_multiplier=500)

    def close(self) -> None:
        self._client._session.close()

    @contextmanager
    def _operation(self, name: str) -> Iterator[None]:
        """Library and HTTP failures as a ``PacsError`` naming the node and ``name``."""
        requests = self._requests
        try:
            yield
        except requests.exceptions.HTTPError as exc:
            status = getattr(exc.response, "status_code", 0) or 0
            raise PacsError(
                self.node.name, name, _http_reason(exc.response), transient=status >= 500
            ) from None
        except requests.exceptions.ConnectTimeout:
            raise PacsError(
                self.node.name, name, f"{self.node.address()} did not answer (timed out)", transient=True
            ) from None
        except requests.exceptions.ConnectionError as exc:
            text = str(exc)
            if "Connection refused" in text or "NewConnectionError" in text or "Name or service" in text:
                reason = f"cannot reach {self.node.address()} (is the server running?)"
            else:  # dropped mid-transfer
                reason = f"the connection to {self.node.address()} broke off"
            raise PacsError(self.node.name, name, reason, transient=True) from None
        except (requests.exceptions.Timeout, TimeoutError):
            raise PacsError(
                self.node.name, name, f"{self.node.address()} stopped answering (timed out)", transient=True
            ) from None
        except requests.exceptions.RequestException as exc:
            raise PacsError(self.node.name, name, " ".join(str(exc).split())[:300]) from None
        except (ValueError, OSError) as exc:  # a malformed or truncated multipart answer
            raise PacsError(
                self.node.name, name, f"the server's answer is malformed: {str(exc)[:200]}", transient=True
            ) from None

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
        matches = [Dataset.from_json(item) for item in found]
        for keyword, pattern in exact.items():
            matches = [ds for ds in matches if wildcard_match(pattern, str(ds.get(keyword, "")))]
        return [StudyMatch.from_dataset(ds) for ds in matches[: query.limit]]

    def find_series(self, study_uid: str) -> list[SeriesMatch]:
        with self._operation("series query"):
            found = self._client.search_for_series(study_uid, fields=list(SERIES_KEYS))
        return [SeriesMatch.from_dataset(Dataset.from_json(item), study_uid) for item in found]

    def find_instances(self, study_uid: str, series_uid: str) -> list[InstanceMatch]:
        with self._operation("instance query"):
            found = self._client.search_for_instances(
                study_uid, series_uid, fields=list(INSTANCE_KEYS), get_remaining=True
            )
        return [InstanceMatch.from_dataset(Dataset.from_json(item), study_uid, series_uid) for item in found]

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
        streamed in one multipart answer, else each instance is asked for on its own."""
        with self._operation("retrieve"):
            if whole_series:
                for ds in self._client.iter_series(study_uid, series_uid, media_types=_AS_STORED):
                    sink(_part10(ds))
            else:
                for item in instances:
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
