"""``models/stability_table.py`` (the table of docs/stability.md): per film first, then over films,
each comparison once, and seconds per map, checked against numpy and the bootstrap on the same
numbers."""

from __future__ import annotations

import numpy as np

from models.stability_table import table, unique
from viewer.explain.evaluation import bootstrap_mean

SEEDS = "net (3 seeds) [seed{}]"
OTHER = "net (other)"


def row(image, kind, a, b, ssim, rho, seconds=""):
    return {
        "image": image, "method": "gradcam", "target": "any", "kind": kind, "model_a": a, "model_b": b,
        "seed_a": "0", "seed_b": "0", "perturbation": "", "ssim": str(ssim), "spearman": str(rho),
        "max_sensitivity": "", "avg_sensitivity": "", "lipschitz": "", "samples": "", "seconds": seconds,
    }  # fmt: skip


def film(image, ssims, seconds):
    """Six pairs of four maps: the three checkpoints' three pairs first, then each against OTHER."""
    names = [SEEDS.format(i) for i in (1, 2, 3)] + [OTHER]
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    return [
        row(image, "models", names[a], names[b], s, s / 2, seconds if k == 0 else "")
        for k, ((a, b), s) in enumerate(zip(pairs, ssims, strict=True))
    ]


def test_films_are_averaged_first_then_bootstrapped_and_seconds_are_per_map():
    rng = np.random.default_rng(0)
    values = rng.random((5, 6))
    rows = [r for i, v in enumerate(values) for r in film(f"ct_{i}", v, "8.0")]
    lines = table(rows, "3 seeds", "(other)", n=200, seed=0)
    checkpoints = next(line for line in lines if "| checkpoints |" in line)
    others = next(line for line in lines if "| vs other |" in line)
    # Checkpoint pairs are (0,1), (0,2), (1,2): columns 0, 1, 3 of each film.
    per_film = values[:, [0, 1, 3]].mean(1)
    mean, low, high = bootstrap_mean(list(per_film), n=200, seed=0)
    assert f"| 5 | {mean:.3f} [{low:.3f}, {high:.3f}] |" in checkpoints
    # Four maps in the set: 8 s over 4 maps is 2 s a map.
    assert checkpoints.endswith("| 2.00 |")
    vs = values[:, [2, 4, 5]].mean(1)
    assert f"{vs.mean():.3f}" in others and others.endswith("| - |")


def test_a_comparison_in_two_runs_counts_once_the_first_runs():
    rows = film("ct_0", [0.2, 0.4, 0.9, 0.6, 0.9, 0.9], "3.0")
    again = [dict(r, ssim="0.0", seconds="") for r in rows]  # a second run over the same film
    assert unique(rows + again) == rows
    line = next(x for x in table(unique(rows + again), "3 seeds", None, n=50, seed=0) if "checkpoints" in x)
    assert "| 1 | 0.400 [nan, nan] |" in line  # one film: its three checkpoint pairs' mean, no interval
