"""The repeatability table of docs/stability.md, from the CSVs of ``saliency-viewer stability`` runs.

    python models/stability_table.py RUN_DIR [RUN_DIR ...] --checkpoints NAME_PART [--other NAME_PART]

A run's ``summary.csv`` bootstraps over rows, and the three pairs of one film are not independent;
this table puts the film first: per film, the mean over its pairs (the three pairs of checkpoints,
or the nine pairs of seeds: three per checkpoint), then the mean over films with a percentile
bootstrap 95 % interval over films. ``--checkpoints`` picks the models compared for repeatability
(a part of their names, e.g. "3 seeds"); ``--other`` a model compared with each of them
(reproducibility rows, "vs other"). Seconds are per map: a set's seconds (on its first row) over
the number of maps in it, so runs that compared different numbers of models read alike; the
perturbation rows' seconds are per film and checkpoint (their ``samples`` noisy maps and the clean one).
A comparison that two runs both made counts once (the first run's). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from viewer.explain.evaluation import bootstrap_mean

# The columns that say which comparison a row is: two runs' rows alike in these are one comparison.
SAME = ("image", "method", "kind", "model_a", "model_b", "seed_a", "seed_b", "perturbation")


def read(folder: Path) -> list[dict]:
    with (folder / "stability.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def unique(rows) -> list[dict]:
    """A comparison two runs both made (the same film, method and pair) once: the first run's."""
    kept, seen = [], set()
    for row in rows:
        key = tuple(row[k] for k in SAME)
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


def _kind(row: dict, checkpoints: str, other: str | None) -> str | None:
    """Which line of the table a row counts in (None: a pair the table does not show)."""
    a, b = checkpoints in row["model_a"], checkpoints in row["model_b"]
    if row["kind"] == "models":
        if a and b:
            return "checkpoints"
        if other and ((a and other in row["model_b"]) or (b and other in row["model_a"])):
            return "vs other"
        return None
    if not (a and b):
        return None
    return row["kind"] if not row["perturbation"] else f"{row['kind']} ({row['perturbation']})"


def table(rows: list[dict], checkpoints: str, other: str | None, n: int, seed: int) -> list[str]:
    films: dict[tuple[str, str], dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    maps_per_set: dict[tuple, int] = defaultdict(int)
    for row in rows:
        model = row["model_a"] if row["kind"] == "seeds" else ""  # seeds: one set per checkpoint
        maps_per_set[row["image"], row["method"], row["kind"], model] += 1
        kind = _kind(row, checkpoints, other)
        if kind is not None:
            films[row["method"], kind][row["image"]].append(row)
    lines = [
        "| Method | Compared | Films | SSIM (95 % CI) | Spearman (95 % CI) | Other measure (95 % CI) "
        "| Seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for (method, kind), by_film in films.items():
        ssim = [np.mean([float(r["ssim"]) for r in group]) for group in by_film.values()]
        rho = [np.mean([float(r["spearman"]) for r in group]) for group in by_film.values()]
        extra = ""
        for measure in ("max_sensitivity", "avg_sensitivity", "lipschitz"):
            per_film = [[float(r[measure]) for r in g if r[measure]] for g in by_film.values()]
            values = [float(np.mean(v)) for v in per_film if v]
            if values:
                mean, low, high = bootstrap_mean(values, n=n, seed=seed)
                extra += f"{measure.replace('_', ' ')} {mean:.4f} [{low:.4f}, {high:.4f}] "
        seconds = []
        for group in by_film.values():
            for r in group:
                if not r["seconds"]:
                    continue
                if r["kind"] in ("models", "seeds"):  # the whole set's maps, on its first row
                    model = r["model_a"] if r["kind"] == "seeds" else ""
                    pairs = maps_per_set[r["image"], r["method"], r["kind"], model]
                    count = round((1 + np.sqrt(1 + 8 * pairs)) / 2)  # k maps give k (k - 1) / 2 pairs
                    seconds.append(float(r["seconds"]) / count)
                else:
                    seconds.append(float(r["seconds"]))
        s, s_low, s_high = bootstrap_mean(ssim, n=n, seed=seed)
        p, p_low, p_high = bootstrap_mean(rho, n=n, seed=seed)
        cost = f"{np.mean(seconds):.2f}" if seconds else "-"  # "vs other": the checkpoints' maps, no cost
        lines.append(
            f"| {method} | {kind} | {len(by_film)} | {s:.3f} [{s_low:.3f}, {s_high:.3f}] | "
            f"{p:.3f} [{p_low:.3f}, {p_high:.3f}] | {extra.strip() or '-'} | {cost} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="output folders of saliency-viewer stability")
    parser.add_argument("--checkpoints", required=True, help="part of the names of the checkpoints compared")
    parser.add_argument("--other", help="part of the name of a model compared with each checkpoint")
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = unique(row for folder in args.runs for row in read(folder))
    print("\n".join(table(rows, args.checkpoints, args.other, args.bootstrap, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
