"""Why a study of a batch run failed, in one line for ``problems.csv``."""

from __future__ import annotations


class StudyFailed(Exception):
    """A study that could not be opened, predicted or explained; the message says why."""


def failure(exc: BaseException) -> str:
    """Why a study failed, in one line: the message of a ``StudyFailed``, else the exception's
    type and the first line of its message."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text if isinstance(exc, StudyFailed) else f"{type(exc).__name__}: {text}"
