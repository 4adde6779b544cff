"""Study URLs, accepted wherever a file is:

    http(s)://HOST[:PORT]/PREFIX/studies/<StudyInstanceUID>[/series/<SeriesInstanceUID>]   DICOMweb
    dimse://CALLED_AE@HOST:PORT/<StudyInstanceUID>[/<SeriesInstanceUID>][?calling=AE&scp_port=N&tls=1]
    pacs://NODE/<StudyInstanceUID>[/<SeriesInstanceUID>]                                 a configured node

A DICOMweb URL whose base is a configured node's uses that node's credentials; otherwise it is
reached without any. Where a server rather than a study is wanted (``explain --send-to``,
``pacs send``), ``parse_server_url`` also takes a DICOMweb service's root URL
(``http(s)://HOST[:PORT]/PREFIX``, the base STOW-RS posts under) and ``dimse://AE@HOST:PORT`` alone.
DIMSE retrieves by C-GET, or by C-MOVE to port N when ``scp_port`` is given;
``tls=1`` speaks DICOM TLS, trusting the system's CAs (a node in ``pacs.toml`` can name its own CA
and the viewer's certificate).

A URL with a user name or password in it (``http://user:password@host/...``, or a password after a
``dimse://`` AE title) is refused: a URL is repeated in messages, in ``problems.csv`` and in the
cache's records, so the password would be too. Credentials belong to a configured node (``auth``,
``username``, and the password in the OS keyring or ``password_env``). No message here repeats the
user name or password of the URL it refuses (``redacted``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from viewer.io.pacs.cache import check_uid
from viewer.io.pacs.nodes import (
    DEFAULT_CALLING_AE,
    ConfigError,
    DicomWebNode,
    DimseNode,
    PacsConfig,
    PacsNode,
    credentials_help,
)

_SCHEMES = ("http://", "https://", "dimse://", "pacs://")
# scheme:// and everything up to the last "@": a password may hold "/" or "@" itself.
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>.*)@", re.DOTALL)
_DICOMWEB = re.compile(
    r"^(?P<base>https?://.+?)/studies/(?P<study>[0-9.]+)(?:/series/(?P<series>[0-9.]+))?/?$"
)


@dataclass(frozen=True)
class StudyLocation:
    """A study (or one of its series) on a node."""

    node: PacsNode
    study_uid: str
    series_uid: str | None = None

    def __str__(self) -> str:
        tail = f"/{self.series_uid}" if self.series_uid else ""
        return f"{self.node.name}/{self.study_uid}{tail}"


def is_study_url(text: str) -> bool:
    return str(text).lower().startswith(_SCHEMES)


def redacted(text: str) -> str:
    """``text`` as it may be shown: a URL without the user name and password it carries (of a
    ``dimse://`` URL, whose user part is the called AE title, only what follows a ``:`` goes)."""
    match = _USERINFO.match(text)
    if not match:
        return text
    kept = ""
    if match["scheme"].lower() == "dimse://":
        kept = match["userinfo"].split(":", 1)[0].split("@", 1)[0] + "@"
    return match["scheme"] + kept + text[match.end() :]


def parse_study_url(text: str, config: PacsConfig) -> StudyLocation:
    """The study ``text`` names; ``ConfigError`` saying what is wrong with it otherwise (the URL
    shown without credentials, which are refused)."""
    lowered = text.lower()
    shown = _without_credentials(text)
    try:
        if lowered.startswith("pacs://"):
            return _node_url(text, config)
        if lowered.startswith("dimse://"):
            return _dimse_url(text)
        return _dicomweb_url(text, config)
    except ValueError as exc:  # a bad UID or port; ConfigError too, made with the URL shown
        raise ConfigError(f"{shown}: {exc}") from None


def parse_server_url(text: str, config: PacsConfig) -> PacsNode:
    """The server ``text`` names, to send to: a DICOMweb service's root
    (``http(s)://HOST[:PORT]/PREFIX``, the base STOW-RS posts under; a configured node's own base
    uses its credentials), ``dimse://CALLED_AE@HOST:PORT[?calling=AE&tls=1]``, ``pacs://NODE``, or
    any study URL (its server). Credentials in it are refused as in ``parse_study_url``."""
    lowered = text.lower()
    shown = _without_credentials(text)
    bare = text.split("?")[0].split("#")[0]
    web = lowered.startswith(("http://", "https://"))
    if web and bare != text and not _DICOMWEB.match(bare):  # not repeated: it may hold a token
        raise ConfigError(f"{bare}: a DICOMweb server's root URL takes no query or fragment")
    try:
        if lowered.startswith("pacs://"):
            return config.node(urlsplit(text).netloc)
        if lowered.startswith("dimse://"):
            return _dimse_url(text, study=False).node
        if _DICOMWEB.match(bare):
            return _dicomweb_url(text, config).node
        base = text.rstrip("/")
        if base.lower().endswith("/studies"):  # STOW-RS's own resource, under the root
            base = base[: -len("/studies")]
        return _dicomweb_node(base, config)
    except ValueError as exc:
        raise ConfigError(f"{shown}: {exc}") from None


def _without_credentials(text: str) -> str:
    """``text`` as it may be shown; ``ConfigError`` when it holds a user name and password."""
    lowered = text.lower()
    shown = redacted(text)
    match = _USERINFO.match(text)
    if match and lowered.startswith("dimse://") and ":" in match["userinfo"]:
        raise ConfigError(
            f"{shown}: credentials in the URL are refused; DIMSE has no password "
            "(dimse://CALLED_AE@HOST:PORT names the server's AE title only)"
        )
    if match and not lowered.startswith("dimse://"):
        raise ConfigError(f"{shown}: credentials in the URL are refused; {credentials_help()}")
    return shown


def _uids(path: str) -> tuple[str, str | None]:
    parts = [p for p in path.split("/") if p]
    if not 1 <= len(parts) <= 2:
        raise ValueError("expected /<StudyInstanceUID>[/<SeriesInstanceUID>] after the server")
    study = check_uid(parts[0], "Study Instance UID")
    return study, check_uid(parts[1], "Series Instance UID") if len(parts) == 2 else None


def _node_url(text: str, config: PacsConfig) -> StudyLocation:
    parts = urlsplit(text)
    study, series = _uids(parts.path)
    return StudyLocation(config.node(parts.netloc), study, series)


def _dimse_url(text: str, *, study: bool = True) -> StudyLocation:
    """A ``dimse://`` URL's node, and its study (``study=False``: a server's, the UIDs optional)."""
    parts = urlsplit(text)
    if not parts.username or not parts.hostname or not parts.port:
        raise ValueError(f"expected dimse://CALLED_AE@HOST:PORT{'/<StudyInstanceUID>' if study else ''}")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = sorted(set(options) - {"calling", "scp_port", "tls"})
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} (calling, scp_port, tls)")
    if options.get("tls", "0") not in ("0", "1"):
        raise ValueError(f"tls is 0 or 1, not {options['tls']!r}")
    study, series = _uids(parts.path) if study or parts.path.strip("/") else ("", None)
    node = DimseNode(
        name=f"{parts.username}@{parts.hostname}:{parts.port}",
        host=parts.hostname,
        port=parts.port,
        called_ae=parts.username,
        calling_ae=options.get("calling", DEFAULT_CALLING_AE),
        scp_port=int(options["scp_port"]) if "scp_port" in options else None,
        tls=options.get("tls") == "1",
    )
    node.check()
    return StudyLocation(node, study, series)


def _dicomweb_url(text: str, config: PacsConfig) -> StudyLocation:
    match = _DICOMWEB.match(text.split("?")[0].split("#")[0])
    if not match:
        raise ValueError("expected http(s)://HOST/PREFIX/studies/<StudyInstanceUID>[/series/<UID>]")
    base = match["base"].rstrip("/")
    study = check_uid(match["study"], "Study Instance UID")
    series = check_uid(match["series"], "Series Instance UID") if match["series"] else None
    return StudyLocation(_dicomweb_node(base, config), study, series)


def _dicomweb_node(base: str, config: PacsConfig) -> DicomWebNode:
    """The DICOMweb service at ``base``: a configured node's (its credentials and prefixes), else
    one reached without credentials."""
    for node in config.nodes.values():
        if isinstance(node, DicomWebNode) and node.address() == base:
            return node
    if not re.match(r"^https?://[^/\s]+", base):
        raise ValueError("expected http(s)://HOST[:PORT]/PREFIX, a DICOMweb server's root")
    node = DicomWebNode(name=urlsplit(base).netloc, dicomweb=base)
    node.check()
    return node
