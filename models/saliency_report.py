"""Measure every saliency method against phantom ground truth, through the viewer's own pipeline.

    python models/saliency_report.py --model cxr_resnet18 --n 50 --seed 4242
    python models/saliency_report.py --model cxr_shortcut_resnet18 --shortcut --n 50 --seed 4242

Writes N fresh chest phantoms as DICOM (a seed neither training nor evaluation used), opens them as
a user would, explains every finding present (the honest model) or the shortcut label on every
film with a burned-in marker (the shortcut model), and prints per method the localization scores
against the finding masks and, for marked films, how often the map points at the marker instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from viewer.explain import METHODS, explain, get_method
from viewer.explain.localization import energy_inside, localization, pointing_game
from viewer.explain.registry import cnn_methods
from viewer.inference.catalog import resolve_model
from viewer.inference.model import LoadedModel
from viewer.io import discover
from viewer.io.annotations import load_annotation
from viewer.io.loader import load_series
from viewer.phantoms.studies import write_chest_set

# Every CAM, gradient and relevance method of a CNN (one pass each at most), then the sampled
# ones with the settings each class declares for the report (documented in docs/explanations.md).
FAST = ",".join(m for m in cnn_methods() if METHODS[m].cost in ("shared", "own-pass"))
SLOW = {m: METHODS[m].report for m in cnn_methods() if METHODS[m].cost == "sampled"}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="cxr_resnet18")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--shortcut", action="store_true", help="marked films; explain the shortcut label")
    parser.add_argument("--label", default="pneumothorax", help="the shortcut label (with --shortcut)")
    parser.add_argument("--methods", default=FAST + "," + ",".join(SLOW))
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    args = parser.parse_args()

    model = LoadedModel.from_manifest(resolve_model(args.model))
    methods = [get_method(m, **SLOW.get(m, {})) for m in args.methods.split(",")]
    rows: dict[str, list[dict]] = defaultdict(list)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        records = write_chest_set(Path(tmp), args.n, args.seed, shortcut=args.shortcut)
        for k, record in enumerate(records, start=1):
            image = load_series(discover([Path(tmp) / record["path"]]).series[0])
            truth = load_annotation(Path(tmp) / "annotations" / f"{record['name']}.json")
            if args.shortcut:
                if truth.marker is None:
                    continue
                targets = [args.label]
            else:
                targets = [label for label, present in record["labels"].items() if present]
            if not targets:
                continue
            result = explain(model, image, methods, targets=targets, seed=args.seed)
            marker = truth.marker_mask(image)
            for smap in result.maps:
                row = {"film": record["name"], "label": smap.target, "seconds": smap.seconds}
                lesion = truth.mask(image, smap.target)
                if lesion.any():
                    row.update(localization(smap.array, lesion).as_dict())
                if marker is not None:
                    row["marker_hit"] = pointing_game(smap.array, marker)
                    row["marker_energy"] = energy_inside(smap.array, marker)
                    row["lesion_hit"] = pointing_game(smap.array, lesion) if lesion.any() else None
                rows[smap.method].append(row)
            print(f"[{k}/{len(records)}] {record['name']} {', '.join(targets)}", file=sys.stderr, flush=True)
    table = summarise(rows)
    print(f"\n{args.model} on {args.n} phantoms (seed {args.seed}), {time.perf_counter() - start:.0f} s\n")
    print(markdown(table, args.shortcut))
    if args.json:
        args.json.write_text(
            json.dumps({"model": args.model, "n": args.n, "seed": args.seed, "methods": table}, indent=1)
        )
    return 0


def _mean(values) -> float | None:
    values = [float(v) for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarise(rows: dict[str, list[dict]]) -> dict[str, dict]:
    keys = (
        "pointing_game",
        "iou_otsu",
        "energy_inside",
        "auprc",
        "marker_hit",
        "marker_energy",
        "lesion_hit",
    )
    return {
        method: {"n": len(r), "seconds": _mean(x["seconds"] for x in r)}
        | {key: _mean(x.get(key) for x in r) for key in keys}
        for method, r in rows.items()
    }


def markdown(table: dict[str, dict], shortcut: bool) -> str:
    def cell(v):
        return "" if v is None else f"{v:.3f}"

    if shortcut:
        head = "| method | films | map peak on marker | peak on lesion | energy in marker | s/map |"
        lines = [head, "|---|---|---|---|---|---|"]
        for m, t in table.items():
            lines.append(
                f"| {m} | {t['n']} | {cell(t['marker_hit'])} | {cell(t['lesion_hit'])} | "
                f"{cell(t['marker_energy'])} | {t['seconds']:.2f} |"
            )
    else:
        head = "| method | maps | pointing game | IoU (Otsu) | energy in mask | AUPRC | s/map |"
        lines = [head, "|---|---|---|---|---|---|---|"]
        for m, t in table.items():
            lines.append(
                f"| {m} | {t['n']} | {cell(t['pointing_game'])} | {cell(t['iou_otsu'])} | "
                f"{cell(t['energy_inside'])} | {cell(t['auprc'])} | {t['seconds']:.2f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
