"""What a PACS is asked (``StudyQuery``) and what it answers (study, series and instance matches),
the same for DICOMweb (QIDO-RS) and DIMSE (C-FIND): both answer with DICOM attributes.

Every UID in an answer is checked to be one (digits and dots, at most 64) when the match is made:
it goes into the next request's URL or identifier and into the cache's folder names, so a server
answering ``../..`` must not choose either. A bad one raises ``ValueError`` naming it, which each
protocol turns into a ``PacsError`` naming the server."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from pydicom import Dataset

from viewer.io.pacs.cache import check_uid

# Return keys asked for at each level (C-FIND needs them named; QIDO-RS "includefield").
STUDY_KEYS = (
    "StudyInstanceUID",
    "PatientName",
    "PatientID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
SERIES_KEYS = (
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "NumberOfSeriesRelatedInstances",
)
INSTANCE_KEYS = ("SOPInstanceUID", "SOPClassUID", "InstanceNumber")


@dataclass(frozen=True)
class StudyQuery:
    """Study-level matching keys; empty ones match everything. Names take DICOM wildcards (``*``)."""

    patient_name: str = ""
    patient_id: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    modality: str = ""
    accession: str = ""
    description: str = ""
    study_uid: str = ""
    limit: int = 500

    def keys(self) -> dict[str, str]:
        """The non-empty matching keys by DICOM keyword, dates as a DICOM range."""
        keys = {
            "PatientName": self.patient_name,
            "PatientID": self.patient_id,
            "ModalitiesInStudy": self.modality.upper(),
            "AccessionNumber": self.accession,
            "StudyDescription": self.description,
            "StudyInstanceUID": self.study_uid,
        }
        if self.date_from or self.date_to:
            low = self.date_from.strftime("%Y%m%d") if self.date_from else ""
            high = self.date_to.strftime("%Y%m%d") if self.date_to else ""
            keys["StudyDate"] = low if low == high else f"{low}-{high}"
        return {k: v for k, v in keys.items() if v}


def wildcard_match(pattern: str, value: str) -> bool:
    """DICOM wildcard matching (PS3.4 C.2.2.2.4: ``*`` any run, ``?`` one character), without
    regard to case, as PACS match person names by default."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.IGNORECASE | re.DOTALL) is not None


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def _uid(ds: Dataset, keyword: str, what: str, *, required: bool = True) -> str:
    """The UID ``keyword`` of an answer, checked; empty only where not ``required``."""
    text = _text(ds, keyword)
    return check_uid(text, what) if text or required else text


def _count(ds: Dataset, keyword: str) -> int | None:
    text = _text(ds, keyword)
    try:
        return int(text) if text else None
    except ValueError:
        return None


@dataclass(frozen=True)
class StudyMatch:
    study_uid: str
    patient_name: str
    patient_id: str
    study_date: str
    accession: str
    description: str
    modalities: tuple[str, ...]
    series_count: int | None
    instance_count: int | None

    @classmethod
    def from_dataset(cls, ds: Dataset) -> StudyMatch:
        return cls(
            _uid(ds, "StudyInstanceUID", "Study Instance UID"),
            _text(ds, "PatientName"),
            _text(ds, "PatientID"),
            _text(ds, "StudyDate"),
            _text(ds, "AccessionNumber"),
            _text(ds, "StudyDescription"),
            tuple(m for m in _text(ds, "ModalitiesInStudy").split("\\") if m),
            _count(ds, "NumberOfStudyRelatedSeries"),
            _count(ds, "NumberOfStudyRelatedInstances"),
        )


@dataclass(frozen=True)
class SeriesMatch:
    study_uid: str
    series_uid: str
    modality: str
    number: int | None
    description: str
    instance_count: int | None

    @classmethod
    def from_dataset(cls, ds: Dataset, study_uid: str) -> SeriesMatch:
        return cls(
            study_uid,
            _uid(ds, "SeriesInstanceUID", "Series Instance UID"),
            _text(ds, "Modality"),
            _count(ds, "SeriesNumber"),
            _text(ds, "SeriesDescription"),
            _count(ds, "NumberOfSeriesRelatedInstances"),
        )


@dataclass(frozen=True)
class InstanceMatch:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class: str

    @classmethod
    def from_dataset(cls, ds: Dataset, study_uid: str, series_uid: str) -> InstanceMatch:
        return cls(
            study_uid,
            series_uid,
            _uid(ds, "SOPInstanceUID", "SOP Instance UID"),
            _uid(ds, "SOPClassUID", "SOP Class UID", required=False),
        )


def identifier(level: str, keys: dict[str, str], returned: tuple[str, ...]) -> Dataset:
    """A C-FIND / C-GET identifier: the matching ``keys`` and empty return keys at ``level``."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in returned:
        setattr(ds, keyword, "")
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds
