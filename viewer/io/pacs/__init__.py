"""PACS: configured nodes, queries, retrieval into a local cache, and sending results back, over
DICOMweb (``dicomweb-client``) and DIMSE (``pynetdicom``); both are the ``pacs`` extra.

A server is not trusted: every exchange ends by the node's ``deadline`` and reads no more than its
byte budgets (``nodes``), DICOMweb follows no redirect to another server (``http_guard``), every
UID answered is checked before it names a request or a folder (``query``), and a URL holding a
user name or password is refused without being repeated (``urls``)."""

from viewer.io.pacs.cache import StudyCache
from viewer.io.pacs.nodes import (
    ConfigError,
    DicomWebNode,
    DimseNode,
    PacsConfig,
    PacsError,
    PacsNode,
    load_config,
)
from viewer.io.pacs.query import InstanceMatch, SeriesMatch, StudyMatch, StudyQuery
from viewer.io.pacs.retrieve import RetrievedSeries, RetrieveProgress, connect, open_cache, retrieve_study
from viewer.io.pacs.urls import StudyLocation, is_study_url, parse_server_url, parse_study_url

__all__ = [
    "ConfigError",
    "DicomWebNode",
    "DimseNode",
    "InstanceMatch",
    "PacsConfig",
    "PacsError",
    "PacsNode",
    "RetrieveProgress",
    "RetrievedSeries",
    "SeriesMatch",
    "StudyCache",
    "StudyLocation",
    "StudyMatch",
    "StudyQuery",
    "connect",
    "is_study_url",
    "load_config",
    "open_cache",
    "parse_server_url",
    "parse_study_url",
    "retrieve_study",
]
