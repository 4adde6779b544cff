"""SIIM-ACR Pneumothorax ``train-rle.csv``: ``ImageId, EncodedPixels``, ``-1`` for no
pneumothorax, several rows for several regions of one image.

The competition's own encoding is *relative* (each start counts on from the end of the previous
run) and column-major, as its ``mask_functions.py`` decodes it; later copies of the data set use
the ordinary Kaggle encoding (absolute, 1-based starts, also column-major). Which one a file uses
is told from its runs (absolute starts only grow; relative ones are gaps) and recorded in the
annotation's notes. The image size comes from the image the mask is drawn on.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from viewer.io.annotation_formats import csv_header, register
from viewer.io.regions import Annotation, Region, stem


def _sniff(path: Path, head: bytes) -> bool:
    columns = csv_header(head)
    return "ImageId" in columns and "EncodedPixels" in columns


def is_absolute(starts: np.ndarray, lengths: np.ndarray) -> bool:
    """Whether run starts are absolute positions: each begins after the previous run's end."""
    if len(starts) < 2:
        return False
    return bool(np.all(starts[1:] >= starts[:-1] + lengths[:-1]))


def decode(starts: np.ndarray, lengths: np.ndarray, absolute: bool, rows: int, cols: int) -> np.ndarray:
    """The ``(rows, cols)`` mask of column-major runs."""
    flat = np.zeros(rows * cols, bool)
    begin = starts - 1 if absolute else np.cumsum(starts) + np.concatenate([[0], np.cumsum(lengths)[:-1]])
    if len(begin) and (begin.min() < 0 or (begin + lengths).max() > rows * cols):
        raise ValueError(
            f"runs reach past a {rows} x {cols} image: the mask belongs to an image of another size"
        )
    for b, n in zip(begin, lengths, strict=True):
        flat[b : b + n] = True
    return flat.reshape(cols, rows).T


@register("SIIM-ACR pneumothorax run lengths", _sniff)
def read(path: Path) -> Annotation:
    annotation = Annotation(str(path))
    encodings = set()
    with path.open(newline="", encoding="utf-8-sig") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            runs = row.get("EncodedPixels", "")
            if runs in ("", "-1"):
                continue
            try:
                values = np.array([int(v) for v in runs.split()], np.int64)
            except ValueError:
                annotation.problems.append(f"line {n}: EncodedPixels is not a list of integers; line skipped")
                continue
            if len(values) % 2 or (values < 0).any():
                annotation.problems.append(
                    f"line {n}: EncodedPixels is not (start, length) pairs; line skipped"
                )
                continue
            starts, lengths = values[0::2], values[1::2]
            absolute = is_absolute(starts, lengths)
            encodings.add("absolute (Kaggle)" if absolute else "relative (SIIM's mask_functions.py)")
            region = Region(
                "pneumothorax",
                file=stem(row.get("ImageId", "")),
                decode=lambda r, c, s=starts, ln=lengths, a=absolute: decode(s, ln, a, r, c),
            )
            annotation.regions.append(region)
    annotation.notes += [f"run lengths read as {e}" for e in sorted(encodings)]
    return annotation
