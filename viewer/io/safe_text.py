"""Text that came from outside (DICOM headers, file names, manifests, annotation files) made safe to
show on a terminal or in the GUI, and to store in CSV files a spreadsheet will open.

Every such string is the sender's: a PatientName of ``"\\x1b[2J\\x1b]0;pwned\\x07"`` clears the
terminal and retitles it when printed raw, a file name of invalid UTF-8 decodes (``os.fsdecode``)
to lone surrogates that UTF-8 output refuses to encode, and a label ``=HYPERLINK(...)`` in a CSV
cell is a formula to Excel and LibreOffice (OWASP, "CSV Injection").

- :func:`printable` turns control characters (C0, DEL, C1 with ESC and CSI, the Unicode line
  separators and bidirectional overrides) into visible backslash escapes (``\\x1b``, ``\\u202e``)
  and a surrogate-escaped byte back into ``\\xff``: the same text, shown, never acted on.
- :func:`csv_cell`, :func:`csv_writer` and :class:`CsvDictWriter`: the one way the product writes
  CSV. A text cell that starts with ``=``, ``+``, ``-`` or ``@`` gets a leading ``'`` (OWASP's
  advice), numbers stay numbers (``-0.5`` too), and :func:`csv_value` undoes the quote on reading.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from typing import Any

# Control characters and their Unicode kin that move the cursor, retitle a terminal or reorder
# text; lone surrogates (a file name's undecodable bytes). Tab and carriage return are C0 too.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# A cell a spreadsheet takes as a formula starts with one of these (OWASP; tab and CR are escaped
# before this check, so they cannot lead a cell).
_FORMULA_START = ("=", "+", "-", "@")
# The numbers the product writes: optional minus, decimals, exponent; or a ';'-joined list of them.
_NUMBER = r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|-?inf|nan"
_NUMBERS = re.compile(rf"(?:{_NUMBER})(?:;(?:{_NUMBER}))*")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for an undecodable byte: the byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: object, *, newlines: bool = False) -> str:
    """``text`` with every control character shown as a backslash escape (``ESC`` as ``\\x1b``)
    and every undecodable file-name byte as ``\\xNN``; ``newlines`` keeps line breaks, for text
    that legitimately has several lines. Idempotent, and the identity on ordinary text."""
    text = os.fspath(text) if isinstance(text, os.PathLike) else str(text)
    if newlines:
        return "\n".join(_UNSAFE.sub(_escape, line) for line in text.split("\n"))
    return _UNSAFE.sub(_escape, text)


def csv_cell(value: Any) -> str:
    """One CSV cell: ``None`` empty, numbers as written, text :func:`printable` (line breaks kept)
    and, when a spreadsheet would take it for a formula, quoted with a leading ``'``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return str(value)
    text = printable(value, newlines=True)
    core = text.lstrip("'")  # text already quoted so is quoted once more: csv_value gives it back
    if core.startswith(_FORMULA_START) and not _NUMBERS.fullmatch(core):
        return "'" + text
    return text


def csv_value(text: str) -> str:
    """A cell as :func:`csv_cell` wrote it, read back: the formula guard's ``'`` taken off (the
    one :func:`csv_cell` would add to the rest, so text that began with ``'`` comes back whole)."""
    if text[:1] == "'" and csv_cell(text[1:]) == text:
        return text[1:]
    return text


class _SafeWriter:
    """``csv.writer`` with every cell through :func:`csv_cell`."""

    def __init__(self, file, **dialect: Any):
        self._writer = csv.writer(file, **dialect)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([csv_cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(file, **dialect: Any) -> _SafeWriter:
    """The CSV writer of every CSV the product writes (``csv.writer``'s arguments): cells safe to
    open in a spreadsheet and to print."""
    return _SafeWriter(file, **dialect)


class CsvDictWriter(csv.DictWriter):
    """``csv.DictWriter`` with every cell, header included, through :func:`csv_cell`."""

    def writerow(self, rowdict: dict) -> Any:
        return super().writerow({k: csv_cell(v) for k, v in rowdict.items()})

    def writerows(self, rowdicts: Iterable[dict]) -> None:
        for row in rowdicts:
            self.writerow(row)


__all__ = ["CsvDictWriter", "csv_cell", "csv_value", "csv_writer", "printable"]
