"""Generate synthetic studies with known ground truth: chest radiographs (cxr) or head CT series (ct).

Writes real DICOM under OUT/dicom, and per study a JSON record, PNG masks and a DICOM Segmentation
under OUT/annotations, plus OUT/labels.csv. Deterministic for a given --seed."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

HELP = "generate synthetic chest X-ray or head CT studies with ground truth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=["cxr", "ct"], help="chest radiographs or head CT series")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created; never overwritten)")
    parser.add_argument("--n", type=int, default=4, help="number of studies (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--shortcut", action="store_true", help="burn in a marker correlated with one label")
    parser.add_argument("--size", type=int, help="image size in pixels (default 1024 for cxr, 512 for ct)")
    parser.add_argument("--slices", type=int, default=28, help="CT slices, 5 mm apart (default 28)")
    parser.add_argument(
        "--compress", choices=["rle", "j2k"], help="lossless compression (RLE or JPEG 2000); default none"
    )


def run(args: argparse.Namespace) -> int:
    from viewer.phantoms.studies import write_chest_set, write_ct_set

    if args.n < 1:
        print("--n must be at least 1", file=sys.stderr)
        return 2
    if (args.out / "dicom").exists():
        print(f"{args.out / 'dicom'} exists; choose an empty output folder", file=sys.stderr)
        return 2
    if args.kind == "cxr":
        writer, size = write_chest_set, args.size or 1024
    else:
        writer, size = partial(write_ct_set, slices=args.slices), args.size or 512
    records = writer(args.out, args.n, args.seed, size=size, shortcut=args.shortcut, compress=args.compress)
    for record in records:
        found = [label for label, present in record["labels"].items() if present] or ["no finding"]
        marker = f", marker {record['marker']['text']!r}" if record.get("marker") else ""
        print(f"{record['path']}: {', '.join(found)}{marker}")
    print(f"wrote {len(records)} {args.kind} studies to {args.out}")
    return 0
