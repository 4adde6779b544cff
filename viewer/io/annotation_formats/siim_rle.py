"""SIIM-ACR Pneumothorax ``train-rle.csv``: ``ImageId, EncodedPixels``, ``-1`` for no
pneumothorax, several rows for several regions of one image.

The competition's own encoding is *relative* (each start counts on from the end of the previous
run) and column-major, as its ``mask_functions.py`` decodes it; later copies of the data set use
the ordinary Kaggle encoding (absolute, 1-based starts, also column-major). Which one a file uses
is told from its runs (absolute starts only grow; relative ones are gaps) and recorded in the
annotation's notes. The image size comes from the image the mask is drawn on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from viewer.io.annotation_formats import csv_header, register
from viewer.io.annotation_formats.limits import csv_rows, max_mask_pixels
from viewer.io.regions import Annotation, Region, stem


def _sniff(path: Path, head: bytes) -> bool:
    columns = csv_header(head)
    return "ImageId" in columns and "EncodedPixels" in columns


def is_absolute(starts: np.ndarray, lengths: np.ndarray) -> bool:
    """Whether run starts are absolute positions: each begins after the previous run's end."""
    if len(starts) < 2:
        return False
    return bool(np.all(starts[1:] >= starts[:-1] + lengths[:-1]))


def run_begins(starts: np.ndarray, lengths: np.ndarray, absolute: bool) -> np.ndarray:
    """0-based positions where the runs begin."""
    if absolute:
        return starts - 1
    return np.cumsum(starts) + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


def _fill(begin: np.ndarray, lengths: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The ``(rows, cols)`` mask of column-major runs at 0-based ``begin``, checked to fit."""
    if len(begin) and (begin.min() < 0 or (begin + lengths).max() > rows * cols):
        raise ValueError(
            f"runs reach past a {rows} x {cols} image: the mask belongs to an image of another size"
        )
    edges = np.zeros(rows * cols + 1, np.int32)
    np.add.at(edges, begin, 1)
    np.add.at(edges, begin + lengths, -1)
    return (np.cumsum(edges[:-1], dtype=np.int32) > 0).reshape(cols, rows).T


def decode(starts: np.ndarray, lengths: np.ndarray, absolute: bool, rows: int, cols: int) -> np.ndarray:
    """The ``(rows, cols)`` mask of column-major runs."""
    return _fill(run_begins(starts, lengths, absolute), lengths, rows, cols)


class _Runs:
    """All rows' runs of one image (its regions: one label, no reader, so one region), decoded
    together for the image they are drawn on: however many rows name it, it costs one mask."""

    def __init__(self) -> None:
        self.begins: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []

    def __call__(self, rows: int, cols: int) -> np.ndarray:
        return _fill(np.concatenate(self.begins), np.concatenate(self.lengths), rows, cols)


def _runs(text: str, most: int) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, lengths)`` of a row's EncodedPixels, none beyond ``most`` (the pixels of the
    largest image); a ValueError saying what is wrong."""
    try:
        values = [int(v) for v in text.split()]
    except ValueError:
        raise ValueError("EncodedPixels is not a list of integers") from None
    if len(values) % 2 or any(v < 0 for v in values):
        raise ValueError("EncodedPixels is not (start, length) pairs")
    if any(v > most for v in values):
        raise ValueError(f"EncodedPixels holds a number beyond the {most} pixels of the largest image")
    array = np.array(values, np.int64)
    return array[0::2], array[1::2]


@register("SIIM-ACR pneumothorax run lengths", _sniff)
def read(path: Path) -> Annotation:
    annotation = Annotation(str(path))
    encodings = set()
    images: dict[str, _Runs] = {}
    most = max_mask_pixels()
    for n, row in csv_rows(path):
        runs = row.get("EncodedPixels", "")
        if runs in ("", "-1"):
            continue
        try:
            starts, lengths = _runs(runs, most)
            absolute = is_absolute(starts, lengths)
            begin = run_begins(starts, lengths, absolute)
            if len(begin) and (begin.min() < 0 or (begin + lengths).max() > most):
                raise ValueError("EncodedPixels reaches past any image")
        except ValueError as exc:
            annotation.problems.append(f"line {n}: {exc}; line skipped")
            continue
        encodings.add("absolute (Kaggle)" if absolute else "relative (SIIM's mask_functions.py)")
        key = stem(row.get("ImageId", ""))
        if key not in images:
            images[key] = _Runs()
            annotation.regions.append(Region("pneumothorax", file=key, decode=images[key]))
        images[key].begins.append(begin)
        images[key].lengths.append(lengths)
    annotation.notes += [f"run lengths read as {e}" for e in sorted(encodings)]
    return annotation
