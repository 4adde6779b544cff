"""The HTTP session every DICOMweb exchange goes through, with what ``requests`` does not bound:

- **a deadline** for a whole exchange, its answer included. ``timeout`` is per read, so a server
  that sends a byte every few seconds never trips it; when the :class:`Deadline` passes, the
  sockets of the exchange are shut down, which ends the read under way.
- **byte budgets** (:class:`Budget`) on what an answer may hold: per part of a multipart answer
  (one instance) and in all. They are counted as the bytes arrive, before anything is kept, so an
  endless answer stops at the budget, not when memory runs out.
- **no redirect away from the configured server**: the viewer promises to connect to no other
  server than the nodes configured; a redirect to another scheme, host or port is refused before
  any connection is made to it.
- **retries** of 429/408/503/504 answers, 3 tries 0.5 s then 1 s apart (``dicomweb-client``'s own
  retrying would also repeat the refusals above, and wait between them).

Each refusal is a :class:`Refusal` whose text is the reason, said as is.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from urllib.parse import urljoin, urlsplit

_RETRIED = (429, 408, 503, 504)
_TRIES = 3
_DEFAULT_PORTS = {"http": 80, "https": 443}
MB = 1024 * 1024


class Refusal(Exception):
    """The exchange was stopped on purpose; ``str()`` is the reason."""


class DeadlinePassed(Refusal):
    pass


class OverBudget(Refusal):
    pass


class RedirectRefused(Refusal):
    pass


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url`` (the port written out), without any user name or password."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # not a number
        port = None
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


class Deadline:
    """The time an exchange may take. :meth:`start` begins it; the connections the exchange uses
    are handed to :meth:`watch`, and when the time passes they are shut down (from a timer thread:
    a blocked read then returns at once) and :attr:`passed` is set."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.passed = False
        self._lock = threading.Lock()
        self._connections: list = []
        self._timer: threading.Timer | None = None

    def start(self) -> None:
        with self._lock:
            self._stop_timer()
            self.passed = False
            self._connections.clear()
            self._timer = threading.Timer(self.seconds, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def stop(self) -> None:
        with self._lock:
            self._stop_timer()
            self._connections.clear()

    def watch(self, connection) -> None:
        """Shut ``connection`` down when the deadline passes (at once if it has)."""
        with self._lock:
            if self.passed:
                _shut(connection)
            elif self._timer is not None:
                self._connections.append(connection)

    def check(self) -> None:
        if self.passed:
            raise DeadlinePassed(self.reason("the server"))

    def reason(self, who: str) -> str:
        return (
            f"{who} did not finish within the {self.seconds:g} s deadline (the node's deadline in pacs.toml)"
        )

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        with self._lock:
            self.passed = True
            for connection in self._connections:
                _shut(connection)


def _shut(connection) -> None:
    """Shut down the sockets of a urllib3 connection: the one it reads (TLS or plain; kept by the
    connection itself because ``http.client`` lets go of it once an answer that ends with the
    connection has begun), and the plain one under it while a TLS handshake is under way.
    ``socket.socket.shutdown`` acts on the descriptor, so a TLS socket's state is left to the
    thread that reads it; a socket closed for good has no descriptor (-1) and is skipped."""
    sockets = ("sock", "viewer_socket", "viewer_raw_socket")
    for sock in {id(s): s for s in (getattr(connection, name, None) for name in sockets) if s}.values():
        if sock is not None and sock.fileno() != -1:
            with contextlib.suppress(OSError):  # closed meanwhile
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Budget:
    """How many bytes an answer may hold: ``part`` per part of a multipart answer (the whole answer
    when it has no parts), ``total`` for everything read since :meth:`start`. Each limit comes with
    the words that say where it is set."""

    def __init__(self) -> None:
        self.start(1, 1, "", "")

    def start(self, part: int, total: int, part_note: str, total_note: str) -> None:
        self.part_limit, self.total_limit = int(part), int(total)
        self.part_note, self.total_note = part_note, total_note
        self.total = 0

    def counter(self, content_type: str) -> _Counter:
        return _Counter(self, _boundary(content_type))


class _Counter:
    """The bytes of one answer as they arrive: the total, and those since the last part boundary
    (a boundary split between two chunks is found through the tail kept of the first)."""

    def __init__(self, budget: Budget, boundary: bytes | None):
        self.budget = budget
        self.marker = b"--" + boundary if boundary else None
        self.part = 0
        self.tail = b""

    def add(self, chunk: bytes) -> None:
        budget = self.budget
        budget.total += len(chunk)
        if budget.total > budget.total_limit:
            raise OverBudget(f"the answer passed {budget.total_limit / MB:g} MB, {budget.total_note}")
        if self.marker is None:
            self.part += len(chunk)
        else:
            window = self.tail + chunk
            at = window.rfind(self.marker)
            self.part = len(window) - at - len(self.marker) if at >= 0 else self.part + len(chunk)
            self.tail = window[-(len(self.marker) - 1) :]
        if self.part > budget.part_limit:
            raise OverBudget(
                f"one instance of the answer passed {budget.part_limit / MB:g} MB, {budget.part_note}"
            )


def _boundary(content_type: str) -> bytes | None:
    media, *params = (p.strip() for p in content_type.split(";"))
    if not media.lower().startswith("multipart/"):
        return None
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "boundary" and value.strip().strip('"'):
            return value.strip().strip('"').encode("latin-1", errors="replace")
    return None


def guarded_session(requests, address: str, deadline: Deadline, budget: Budget):
    """A ``requests`` session for the server at ``address`` (``http(s)://host[:port]/...``) that
    keeps to it, within ``deadline`` and ``budget``; no proxy from the environment."""
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    home = origin(address)

    def watched(pool_class):
        class Connection(pool_class.ConnectionCls):
            def _new_conn(self):
                sock = super()._new_conn()
                self.viewer_raw_socket = sock  # shut down if the deadline passes mid-handshake
                return sock

            def connect(self):
                super().connect()
                self.viewer_socket = self.sock  # still read after http.client lets go of it

        class Pool(pool_class):
            ConnectionCls = Connection

            def _get_conn(self, timeout=None):
                connection = super()._get_conn(timeout)
                deadline.watch(connection)
                return connection

        return Pool

    class Adapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {
                "http": watched(HTTPConnectionPool),
                "https": watched(HTTPSConnectionPool),
            }

    class Session(requests.Session):
        def send(self, request, **kwargs):
            # "*" in query values goes as itself: Orthanc (1.10, Debian 12) matches the values
            # without percent-decoding them, so PatientName=DOE%2A finds nothing; servers that
            # decode read a literal "*" the same (RFC 3986 allows it in a query).
            if "?" in (request.url or ""):
                head, _, query = request.url.partition("?")
                request.url = head + "?" + query.replace("%2A", "*")
            tries = 0
            while True:
                deadline.check()
                response = super().send(request, **kwargs)
                tries += 1
                if response.status_code not in _RETRIED or tries == _TRIES:
                    return response
                response.close()
                time.sleep(0.5 * 2 ** (tries - 1))

        def get_redirect_target(self, response):
            target = super().get_redirect_target(response)
            if target is not None and origin(urljoin(response.url, target)) != home:
                response.close()
                raise RedirectRefused(
                    f"{home} redirected to {origin(urljoin(response.url, target))}, another server "
                    "(a redirect away from the configured server is not followed)"
                )
            return target

    def count(response, *args, **kwargs):
        """Count the answer's bytes as ``requests`` reads them (``iter_content`` is how both
        ``.content`` and streaming read; decompressed bytes, so a gzip bomb counts in full)."""
        counter = budget.counter(response.headers.get("Content-Type", ""))
        read = response.raw.stream

        def stream(*a, **k):
            for chunk in read(*a, **k):
                counter.add(chunk)
                yield chunk

        response.raw.stream = stream
        return response

    session = Session()
    session.trust_env = False  # no proxy from the environment: only the configured server
    adapter = Adapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.hooks["response"].append(count)
    return session
