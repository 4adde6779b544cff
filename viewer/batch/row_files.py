"""CSV files of result rows that a run appends study by study (``per_image.csv``,
``metrics.csv``): every study's rows synced to disk before the next, so a run that dies resumes
without losing or repeating one. Every cell goes through ``viewer.io.safe_text`` (no formula a
spreadsheet would run, no control character, file names that are not UTF-8 kept as ``\\xff``), and
reading undoes its formula guard."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

from viewer.io.atomic import replace
from viewer.io.safe_text import CsvDictWriter, csv_value, csv_writer


def read_raw_rows(path: Path) -> Iterator[dict[str, str]]:
    """The rows an earlier run wrote, as text, read one by one (a file of 10^6 rows is never held
    whole); a last line cut off by a crash is first cut from the file, so appending goes on after
    the last whole row."""
    if not path.exists():
        return iter(())
    mend_tail(path)
    return _dict_rows(path)


def _dict_rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            yield {key: csv_value(value) if isinstance(value, str) else value for key, value in row.items()}


def mend_tail(path: Path) -> None:
    """Cut a last line that a crash left without its newline."""
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        at = size
        while at > 0:  # back to the last newline, a block at a time
            start = max(0, at - 65536)
            f.seek(start)
            chunk = f.read(at - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                f.truncate(start + cut + 1)
                break
            at = start
        else:
            f.truncate(0)
        f.flush()
        os.fsync(f.fileno())


def rows_text(rows: list[dict], columns: tuple[str, ...]) -> bytes:
    """A whole CSV file of ``rows`` (cells formatted as ``cell`` does)."""
    text = io.StringIO()
    writer = CsvDictWriter(text, fieldnames=columns, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: cell(v) for k, v in row.items()} for row in rows])
    return text.getvalue().encode()


def sort_rows(path: Path, column: str, order: dict[str, int]) -> int:
    """Put the rows of ``path`` in the order of their ``column``'s value in ``order`` (rewriting
    the file, atomically, only if they are not in it already); returns how many rows there are.
    Rows of one value are contiguous (a study's rows are appended together), so only the byte
    range of each value's block is kept, and the file is copied block by block."""
    blocks: list[tuple[int, int, int]] = []  # (place, start, end) per run of one value
    rows = 0
    with path.open("rb") as f:
        header_end = len(f.readline())
        at = header_end
        for line, value in _raw_rows(f, column):
            place = order.get(value, len(order))
            if blocks and blocks[-1][0] == place and blocks[-1][2] == at:
                blocks[-1] = (place, blocks[-1][1], at + len(line))
            else:
                blocks.append((place, at, at + len(line)))
            at += len(line)
            rows += 1
        if all(a[0] <= b[0] for a, b in pairwise(blocks)):
            return rows

        def copy(out) -> None:
            f.seek(0)
            out.write(f.read(header_end))
            for _, start, end in sorted(blocks, key=lambda block: block[0]):
                f.seek(start)
                out.write(f.read(end - start))

        replace(path, copy)
    return rows


def keep_rows(path: Path, column: str, keep: set[str]) -> None:
    """Drop, atomically, the rows of ``path`` whose ``column`` is not in ``keep``."""
    with path.open("rb") as f:
        if all(value in keep for _, value in _raw_rows(f, column)):
            return

        def copy(out) -> None:
            f.seek(0)
            out.write(f.readline())
            out.writelines(line for line, value in _raw_rows(f, column) if value in keep)

        replace(path, copy)


def _raw_rows(f, column: str):
    """Each row's raw bytes (a quoted cell may span lines) and its ``column``'s value."""
    f.seek(0)
    at = next(csv.reader([f.readline().decode()])).index(column)
    pending = b""
    for line in f:
        pending += line
        if pending.count(b'"') % 2:  # a newline inside quotes: the row goes on
            continue
        fields = next(csv.reader([pending.decode()]), [])
        yield pending, fields[at] if len(fields) > at else ""
        pending = b""


def problems_text(problems: list[tuple[str, str]]) -> bytes:
    """``problems.csv``: what could not be done, and why."""
    text = io.StringIO()
    csv_writer(text, lineterminator="\n").writerows([("source", "reason"), *problems])
    return text.getvalue().encode()


class RowAppender:
    """Appends whole rows to a CSV and syncs them to disk after each study."""

    def __init__(self, path: Path, columns: tuple[str, ...]):
        self.path, self.columns = path, columns

    def __enter__(self):
        new = not self.path.exists() or self.path.stat().st_size == 0
        if not new:  # a file another version wrote: rows appended under its header would misalign
            with self.path.open(newline="") as existing:
                header = existing.readline().rstrip("\r\n").split(",")
            if tuple(header) != self.columns:
                raise ValueError(
                    f"{self.path} has other columns ({', '.join(header)}) than this version writes; "
                    "choose a new folder rather than resuming it"
                )
        self.file = self.path.open("a", newline="")
        self.writer = CsvDictWriter(
            self.file, fieldnames=self.columns, restval="", extrasaction="ignore", lineterminator="\n"
        )
        if new:
            self.writer.writeheader()
        return self.append

    def append(self, rows: list[dict]) -> None:
        self.writer.writerows([{k: cell(v) for k, v in row.items()} for row in rows])
        self.file.flush()
        os.fsync(self.file.fileno())

    def __exit__(self, *exc) -> None:
        self.file.close()


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        return ";".join(f"{v:.4f}" for v in value)
    return str(value)
