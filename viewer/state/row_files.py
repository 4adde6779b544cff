"""CSV files of result rows that a run appends study by study (``per_image.csv``,
``metrics.csv``): every study's rows synced to disk before the next, so a run that dies resumes
without losing or repeating one."""

from __future__ import annotations

import csv
import io
import os
from itertools import pairwise
from pathlib import Path

from viewer.io.atomic import replace_bytes


def read_raw_rows(path: Path) -> list[dict[str, str]]:
    """The rows an earlier run wrote, as text; a last line cut off by a crash is dropped (and cut
    from the file, so appending goes on after the last whole row)."""
    if not path.exists():
        return []
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        replace_bytes(path, text.encode())
    return list(csv.DictReader(io.StringIO(text)))


def rows_text(rows: list[dict], columns: tuple[str, ...]) -> bytes:
    """A whole CSV file of ``rows`` (cells formatted as ``cell`` does)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: cell(v) for k, v in row.items()} for row in rows])
    return text.getvalue().encode()


def sort_rows(path: Path, column: str, order: dict[str, int]) -> int:
    """Put the rows of ``path`` in the order of their ``column``'s value in ``order`` (rewriting
    the file only if they are not in it already); returns how many rows there are."""
    with path.open(newline="") as f:
        header, *rows = list(csv.reader(f))
    at = header.index(column)
    keys = [order.get(row[at], len(order)) for row in rows]
    if any(a > b for a, b in pairwise(keys)):
        rows = [row for _, row in sorted(zip(keys, rows, strict=True), key=lambda pair: pair[0])]
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows([header, *rows])
        replace_bytes(path, text.getvalue().encode())
    return len(rows)


def problems_text(problems: list[tuple[str, str]]) -> bytes:
    """``problems.csv``: what could not be done, and why."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([("source", "reason"), *problems])
    return text.getvalue().encode()


class RowAppender:
    """Appends whole rows to a CSV and syncs them to disk after each study."""

    def __init__(self, path: Path, columns: tuple[str, ...]):
        self.path, self.columns = path, columns

    def __enter__(self):
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.file = self.path.open("a", newline="")
        self.writer = csv.DictWriter(
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
