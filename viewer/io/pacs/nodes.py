"""PACS nodes the user configured: a TOML file, read and written here; secrets never in it.

    [cache]
    folder = "~/.cache/saliency-viewer/pacs"   # optional
    max_gb = 20

    [nodes.archive-web]
    dicomweb = "https://pacs.example.org/dicom-web"
    qido_prefix = ""                 # optional, for servers with separate QIDO/WADO/STOW roots
    auth = "basic"                   # or "bearer", or left out
    username = "radiologist"
    password_env = "ARCHIVE_PASSWORD"  # else the OS keyring (saliency-viewer pacs login NODE)

    [nodes.archive]
    host = "pacs.example.org"
    port = 104
    called_ae = "ARCHIVE"
    calling_ae = "SALIENCYVIEW"      # optional
    scp_port = 11113                 # optional: retrieve by C-MOVE to the viewer's own SCP
    tls = true                       # optional: DICOM TLS (PS3.15 B.1), the server's certificate checked
    tls_ca = "/etc/pki/hospital-ca.pem"         # optional: whom to trust (default: the system's CAs)
    tls_cert = "~/.config/saliency-viewer/viewer.pem"  # optional: the viewer's own certificate
    tls_key = "~/.config/saliency-viewer/viewer.key"   # ... and its key (for C-MOVE, and servers that ask)

Every node also takes (all optional; the defaults below):

    timeout = 30            # seconds any one read or connection attempt may wait
    deadline = 600          # seconds one exchange may take in all, its answer included (see below)
    max_instance_mb = 1536  # the largest instance (one part of a multipart answer) read; default:
                            # the viewer's budget for one file (viewer.io.budgets: load_bytes)
    max_study_mb = 20480    # the most one study's retrieval reads

``timeout`` alone does not bound an exchange: a server that sends a byte every few seconds never
lets a read time out. ``deadline`` does: a query with all its pages, a series retrieved in one
answer, an instance retrieved on its own, a C-GET or C-MOVE association and a send each end when
it passes. The byte budgets keep an endless answer from filling memory or the cache; an instance
larger than the viewer's budget for decoding one file could not be opened anyway, hence that
default (``SALIENCY_VIEWER_LOAD_BYTES`` moves both).

A node's password or token is read when a connection is made, from the environment variable the
node names or from the OS keyring (the ``keyring`` package, service ``saliency-viewer``), and is
never kept in a dataclass, a settings file or a log. A URL with a user name or password in it is
refused (it would be shown in messages and kept in the cache's records).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from viewer.io.atomic import replace_bytes
from viewer.io.user_config import config_folder

KEYRING_SERVICE = "saliency-viewer"
DEFAULT_CALLING_AE = "SALIENCYVIEW"
DEFAULT_CACHE_GB = 20.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_DEADLINE = 600.0  # a 2 GB series over 50 Mbit/s takes about 330 s
DEFAULT_MAX_STUDY_MB = 20 * 1024  # the cache's own default size
_MB = 1024 * 1024
LIMIT_KEYS = ("timeout", "deadline", "max_instance_mb", "max_study_mb")
_AE_TITLE = re.compile(r"^[\x21-\x5b\x5d-\x7e][\x20-\x5b\x5d-\x7e]{0,15}$")  # no backslash, ASCII
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class PacsError(Exception):
    """A PACS operation failed; ``str()`` names the node, the operation and the reason.
    ``transient``: the server was unreachable, timed out or failed on its side, so the same request
    may succeed if repeated (refused credentials or a refused association will not)."""

    def __init__(self, node: str, operation: str, reason: str, *, transient: bool = False):
        super().__init__(f"{node}: {operation} failed: {reason}")
        self.node = node
        self.operation = operation
        self.reason = reason
        self.transient = transient


@contextmanager
def checked_answer(node: str, operation: str) -> Iterator[None]:
    """Around matches made from a server's answer: a UID that is not one (or an attribute that is
    not what its VR says) refuses the whole answer, naming the server and the operation."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's warning about the value said in the refusal
            yield
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise PacsError(node, operation, f"refused the answer: {str(exc)[:200]}") from None


class ConfigError(ValueError):
    """The node configuration cannot be read; ``str()`` names the file and the entry."""


def credentials_help(node: str = "NODE") -> str:
    """Where a password goes instead of a URL (said wherever one is refused)."""
    return (
        f"set auth and username for the node in pacs.toml and store its password in the OS keyring "
        f"with `saliency-viewer pacs login {node}` (or name an environment variable with password_env)"
    )


def instance_budget(node: DicomWebNode | DimseNode) -> tuple[int, str]:
    """The most bytes one instance from ``node`` may hold, and the words that say where that is set:
    the node's ``max_instance_mb``, else the viewer's budget for one file (decoded, a file larger
    than that could not be opened: ``viewer.io.budgets``)."""
    if node.max_instance_mb is not None:
        return int(node.max_instance_mb * _MB), "the node's max_instance_mb (raise it in pacs.toml)"
    from viewer.io.budgets import budgets, env_name

    return budgets().load_bytes, (
        f"the viewer's budget per file ({env_name('load_bytes')} or the node's max_instance_mb raises it)"
    )


def study_budget(node: DicomWebNode | DimseNode) -> tuple[int, str]:
    """The most bytes one study's retrieval from ``node`` may read, and where that is set."""
    return int(node.max_study_mb * _MB), "the node's max_study_mb (raise it in pacs.toml)"


def _check_limits(node: DicomWebNode | DimseNode) -> None:
    """Every limit a positive number: a zero or negative deadline would refuse every exchange,
    a string would fail only when the first connection is made."""
    for key in LIMIT_KEYS:
        value = getattr(node, key)
        if value is None and key == "max_instance_mb":  # the viewer's own budget
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"node {node.name}: {key} must be a positive number, not {value!r}")


@dataclass(frozen=True)
class DicomWebNode:
    """A DICOMweb service: QIDO-RS, WADO-RS and STOW-RS under one base URL (or their own prefixes)."""

    name: str
    dicomweb: str
    qido_prefix: str | None = None
    wado_prefix: str | None = None
    stow_prefix: str | None = None
    auth: str | None = None  # "basic" | "bearer" | None
    username: str | None = None
    password_env: str | None = None  # the variable holding the password (basic) or token (bearer)
    timeout: float = DEFAULT_TIMEOUT
    deadline: float = DEFAULT_DEADLINE
    max_instance_mb: float | None = None  # None: the viewer's budget per file
    max_study_mb: float = DEFAULT_MAX_STUDY_MB

    protocol = "dicomweb"

    def address(self) -> str:
        return self.dicomweb.rstrip("/")

    def check(self) -> None:
        urls = [self.dicomweb, self.qido_prefix, self.wado_prefix, self.stow_prefix]
        if any("@" in (url or "") for url in urls):
            # Not repeated: the text may hold the password itself.
            raise ConfigError(
                f"node {self.name}: credentials in the dicomweb URL are refused; "
                + credentials_help(self.name)
            )
        if not re.match(r"^https?://[^/\s]+", self.dicomweb):
            raise ConfigError(f"node {self.name}: dicomweb must be an http(s):// URL, not {self.dicomweb!r}")
        if self.auth not in (None, "basic", "bearer"):
            raise ConfigError(f"node {self.name}: auth must be 'basic' or 'bearer', not {self.auth!r}")
        if self.auth == "basic" and not self.username:
            raise ConfigError(f"node {self.name}: auth 'basic' needs a username")
        _check_limits(self)


@dataclass(frozen=True)
class DimseNode:
    """A DIMSE peer: C-ECHO, C-FIND, C-GET or C-MOVE, C-STORE over one association each."""

    name: str
    host: str
    port: int
    called_ae: str
    calling_ae: str = DEFAULT_CALLING_AE
    scp_port: int | None = None  # given: retrieve by C-MOVE to a storage SCP on this port
    timeout: float = DEFAULT_TIMEOUT
    tls: bool = False  # DICOM TLS: the server's certificate verified against tls_ca (else the system's)
    tls_ca: str | None = None
    tls_cert: str | None = None  # the viewer's certificate and key: for servers that require one,
    tls_key: str | None = None  # and for the storage SCP a C-MOVE over TLS sends to
    deadline: float = DEFAULT_DEADLINE
    max_instance_mb: float | None = None  # None: the viewer's budget per file
    max_study_mb: float = DEFAULT_MAX_STUDY_MB

    protocol = "dimse"

    def address(self) -> str:
        return f"{self.called_ae}@{self.host}:{self.port}"

    def check(self) -> None:
        if not isinstance(self.host, str) or not re.fullmatch(r"[A-Za-z0-9._:\[\]-]+", self.host):
            # "user:password@host" among others; not repeated, it may hold the password itself.
            raise ConfigError(f"node {self.name}: host must be a host name or an IP address")
        for key in ("called_ae", "calling_ae"):
            if not _AE_TITLE.fullmatch(getattr(self, key)):
                raise ConfigError(f"node {self.name}: {key} must be 1-16 ASCII characters, no backslash")
        for key in ("port", "scp_port"):
            value = getattr(self, key)
            if value is not None and not 0 < int(value) < 65536:
                raise ConfigError(f"node {self.name}: {key} must be a port number 1-65535, not {value}")
        files = [key for key in ("tls_ca", "tls_cert", "tls_key") if getattr(self, key)]
        if files and not self.tls:
            raise ConfigError(f"node {self.name}: {files[0]} is set but tls is not: add tls = true")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError(f"node {self.name}: tls_cert and tls_key go together")
        if self.tls and self.scp_port and not self.tls_cert:
            raise ConfigError(
                f"node {self.name}: a C-MOVE over TLS (scp_port) needs the viewer's certificate: "
                "tls_cert and tls_key"
            )
        _check_limits(self)


PacsNode = DicomWebNode | DimseNode
# The key that tells a node's protocol in the TOML file -> its dataclass.
_PROTOCOL_KEYS = {"dicomweb": DicomWebNode, "host": DimseNode}


@dataclass(frozen=True)
class PacsConfig:
    """Every configured node, and where retrieved studies are cached."""

    nodes: dict[str, PacsNode] = field(default_factory=dict)
    cache_folder: Path | None = None
    cache_max_gb: float = DEFAULT_CACHE_GB

    def node(self, name: str) -> PacsNode:
        try:
            return self.nodes[name]
        except KeyError:
            known = ", ".join(self.nodes) or "none configured"
            raise ConfigError(f"no PACS node {name!r} (known: {known}; see {config_path()})") from None

    def with_node(self, node: PacsNode) -> PacsConfig:
        node.check()
        return replace(self, nodes={**self.nodes, node.name: node})


def config_path() -> Path:
    """``$SALIENCY_VIEWER_PACS``, else ``pacs.toml`` in the user's configuration folder."""
    if os.environ.get("SALIENCY_VIEWER_PACS"):
        return Path(os.environ["SALIENCY_VIEWER_PACS"]).expanduser()
    return config_folder() / "pacs.toml"


def default_cache_folder() -> Path:
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA", "~")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "saliency-viewer" / "pacs"


def load_config(path: Path | None = None) -> PacsConfig:
    """The configuration at ``path`` (default: ``config_path()``); empty when there is none."""
    path = path or config_path()
    if not path.exists():
        return PacsConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    nodes: dict[str, PacsNode] = {}
    for name, entry in (data.get("nodes") or {}).items():
        nodes[name] = _node(path, name, entry)
    cache = data.get("cache") or {}
    folder = cache.get("folder")
    return PacsConfig(
        nodes, Path(folder).expanduser() if folder else None, float(cache.get("max_gb", DEFAULT_CACHE_GB))
    )


def _node(path: Path, name: str, entry: object) -> PacsNode:
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{path}: node name {name!r}: letters, digits, '.', '_' or '-' only")
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: [nodes.{name}] must be a table")
    if any(key in entry for key in ("password", "token", "secret")):
        # A secret in a settings file is refused rather than used: it would sit in backups.
        raise ConfigError(
            f"{path}: [nodes.{name}] holds a password; name an environment variable (password_env) "
            "or store it in the OS keyring with `saliency-viewer pacs login " + name + "`"
        )
    kinds = [cls for key, cls in _PROTOCOL_KEYS.items() if key in entry]
    if len(kinds) != 1:
        raise ConfigError(f"{path}: [nodes.{name}] needs either dicomweb = URL or host/port/called_ae")
    cls = kinds[0]
    known = {f.name for f in fields(cls)} - {"name"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ConfigError(f"{path}: [nodes.{name}] unknown key(s) {', '.join(unknown)}")
    try:
        node = cls(name=name, **entry)
    except TypeError as exc:  # a required key missing
        raise ConfigError(f"{path}: [nodes.{name}] {exc}") from None
    try:
        node.check()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return node


def save_config(config: PacsConfig, path: Path | None = None) -> Path:
    """Write ``config`` atomically; a node's defaults are left out so the file stays short."""
    lines: list[str] = []
    if config.cache_folder or config.cache_max_gb != DEFAULT_CACHE_GB:
        lines.append("[cache]")
        if config.cache_folder:
            lines.append(f"folder = {json.dumps(str(config.cache_folder))}")
        lines.append(f"max_gb = {config.cache_max_gb:g}")
        lines.append("")
    for name, node in config.nodes.items():
        lines.append(f"[nodes.{name}]")
        for f in fields(node):
            value = getattr(node, f.name)
            if f.name == "name" or value is None or value == f.default:
                continue
            # JSON strings are valid TOML basic strings; numbers print the same in both.
            lines.append(f"{f.name} = {json.dumps(value)}")
        lines.append("")
    return replace_bytes(path or config_path(), "\n".join(lines).encode("utf-8"))


def secret(node: PacsNode) -> str | None:
    """The node's password or token, from its environment variable or the OS keyring; None if the
    node needs none. Raises ``PacsError`` when one is needed and neither has it."""
    if not isinstance(node, DicomWebNode) or node.auth is None:
        return None
    if node.password_env:
        value = os.environ.get(node.password_env)
        if value:
            return value
    value = _keyring_get(node.name)
    if value:
        return value
    where = f"${node.password_env} is not set and " if node.password_env else ""
    raise PacsError(
        node.name,
        "authentication",
        f"{where}the OS keyring has no {'token' if node.auth == 'bearer' else 'password'} for it "
        f"(store one with `saliency-viewer pacs login {node.name}`)",
    )


def store_secret(node_name: str, value: str) -> None:
    """Keep a node's password or token in the OS keyring (never in the TOML file)."""
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:
        raise ConfigError(
            "storing a password needs the OS keyring: pip install 'saliency-viewer[pacs]', "
            "or name an environment variable with password_env"
        ) from None
    try:
        keyring.set_password(KEYRING_SERVICE, f"pacs:{node_name}", value)
    except KeyringError as exc:
        raise ConfigError(f"the OS keyring refused the password: {exc}") from None


def _keyring_get(node_name: str) -> str | None:
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:
        return None
    try:
        return keyring.get_password(KEYRING_SERVICE, f"pacs:{node_name}")
    except (KeyringError, RuntimeError):  # no backend on a headless machine
        return None
