"""Study URLs, accepted wherever a file is:

    http(s)://HOST[:PORT]/PREFIX/studies/<StudyInstanceUID>[/series/<SeriesInstanceUID>]   DICOMweb
    dimse://CALLED_AE@HOST:PORT/<StudyInstanceUID>[/<SeriesInstanceUID>][?calling=AE&scp_port=N&tls=1]
    pacs://NODE/<StudyInstanceUID>[/<SeriesInstanceUID>]                                 a configured node

A DICOMweb URL whose base is a configured node's uses that node's credentials; otherwise it is
reached without any. DIMSE retrieves by C-GET, or by C-MOVE to port N when ``scp_port`` is given;
``tls=1`` speaks DICOM TLS, trusting the system's CAs (a node in ``pacs.toml`` can name its own CA
and the viewer's certificate).
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
)

_SCHEMES = ("http://", "https://", "dimse://", "pacs://")
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


def parse_study_url(text: str, config: PacsConfig) -> StudyLocation:
    """The study ``text`` names; ``ConfigError`` saying what is wrong with it otherwise."""
    lowered = text.lower()
    try:
        if lowered.startswith("pacs://"):
            return _node_url(text, config)
        if lowered.startswith("dimse://"):
            return _dimse_url(text)
        return _dicomweb_url(text, config)
    except ValueError as exc:  # a bad UID or port
        raise ConfigError(f"{text}: {exc}") from None


def _uids(path: str, text: str) -> tuple[str, str | None]:
    parts = [p for p in path.split("/") if p]
    if not 1 <= len(parts) <= 2:
        raise ConfigError(f"{text}: expected /<StudyInstanceUID>[/<SeriesInstanceUID>] after the server")
    study = check_uid(parts[0], "Study Instance UID")
    return study, check_uid(parts[1], "Series Instance UID") if len(parts) == 2 else None


def _node_url(text: str, config: PacsConfig) -> StudyLocation:
    parts = urlsplit(text)
    study, series = _uids(parts.path, text)
    return StudyLocation(config.node(parts.netloc), study, series)


def _dimse_url(text: str) -> StudyLocation:
    parts = urlsplit(text)
    if not parts.username or not parts.hostname or not parts.port:
        raise ConfigError(f"{text}: expected dimse://CALLED_AE@HOST:PORT/<StudyInstanceUID>")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = sorted(set(options) - {"calling", "scp_port", "tls"})
    if unknown:
        raise ConfigError(f"{text}: unknown option(s) {', '.join(unknown)} (calling, scp_port, tls)")
    if options.get("tls", "0") not in ("0", "1"):
        raise ConfigError(f"{text}: tls is 0 or 1, not {options['tls']!r}")
    study, series = _uids(parts.path, text)
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
        raise ConfigError(f"{text}: expected http(s)://HOST/PREFIX/studies/<StudyInstanceUID>[/series/<UID>]")
    base = match["base"].rstrip("/")
    study = check_uid(match["study"], "Study Instance UID")
    series = check_uid(match["series"], "Series Instance UID") if match["series"] else None
    for node in config.nodes.values():  # a configured server: its credentials and prefixes
        if isinstance(node, DicomWebNode) and node.address() == base:
            return StudyLocation(node, study, series)
    node = DicomWebNode(name=urlsplit(base).netloc, dicomweb=base)
    node.check()
    return StudyLocation(node, study, series)
