"""LIME and RISE stop sampling once their estimate has settled: fewer draws, the same map as the
full run where the run had to go on, the same map for the same seed, and a note that says how many
draws the map used. On a small seeded CNN and a hand-made one-box network, so each test takes
about a second at most."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.explain.peers import pearson, random_input
from viewer.explain import ExplainContext, get_method
from viewer.explain.perturbation import lime_kernel_weights, superpixels, weighted_ridge

SIZE = 32


def tiny_network(seed: int = 0) -> nn.Module:
    """Fixed random weights, near-uniform probabilities: close to linear in the superpixels, so
    LIME's surrogate settles well before 1,000 samples (an easy case)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 5, padding=2),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(128, 4),
    ).eval()


class Region(nn.Module):
    """The target's evidence in one box (a square, or a cube of a volume): a steep logistic of
    its mean, so the masks that cover it decide the score and RISE's map settles within its
    2,000 masks."""

    def __init__(self, box: tuple[slice, ...] = (slice(8, 20), slice(12, 24))):
        super().__init__()
        self.box = box

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = x[(slice(None), slice(None), *self.box)]
        s = 6 * (inside.mean(dim=tuple(range(1, x.ndim))) - 0.5)
        return torch.stack([s, -s], 1)


@pytest.fixture(scope="module")
def region():
    return Region(), 1 + 0.1 * random_input(seed=5, size=SIZE), 0


@pytest.fixture(scope="module")
def case():
    net = tiny_network()
    x = random_input(seed=5, size=SIZE)
    with torch.no_grad():
        target = int(net(x).argmax())
    return net, x, target


def run(case, method_id: str, targets=None, seed: int = 0, **params):
    """Raw maps ``(T, H, W)`` and the notes of the first target."""
    net, x, target = case
    targets = targets or [target]
    method = get_method(method_id, **params)
    with ExplainContext(net, None, x, task="multiclass", seed=seed, input_grads=False) as ctx:
        maps = method.compute(ctx, targets)[:, 0].numpy()
    return maps, method.map_notes(targets[0])


def differ(a: np.ndarray, b: np.ndarray) -> float:
    """The largest difference relative to the largest value."""
    return float(np.abs(a - b).max() / np.abs(b).max())


def used(notes: list[str], unit: str) -> int:
    (note,) = notes
    match = re.search(rf"(?:stopped at (\d+) of \d+|used all (\d+)) {unit}", note)
    assert match, note
    return int(match.group(1) or match.group(2))


def plain_lime(case, draws: int, use: int, seed: int = 0, superpixel_count: int = 100) -> np.ndarray:
    """LIME as before stopping existed: ``lime_image``'s draw of ``draws`` rows, the first ``use``
    of them scored in one batch and fitted once."""
    net, x, target = case
    segments = superpixels(x[0], superpixel_count)
    d = int(segments.max()) + 1
    samples = np.random.RandomState(seed).randint(0, 2, draws * d).reshape(draws, d)[:use]
    samples[0, :] = 1
    seg = torch.from_numpy(segments)
    fill = torch.stack([torch.tensor([float(c[seg == i].mean()) for i in range(d)])[seg] for c in x[0]])
    keep = torch.from_numpy(samples).bool()[:, seg][:, None]  # (n, 1, H, W)
    with torch.no_grad():
        scores = torch.softmax(net(torch.where(keep, x, fill[None])), 1)[:, target].double().numpy()
    coefficients = weighted_ridge(
        samples.astype(np.float64), scores[:, None], lime_kernel_weights(samples, 0.25)
    )
    return coefficients[:, 0][segments]


def plain_rise(case, draws: int, use: int, seed: int = 0, s: int = 8, p: float = 0.5) -> np.ndarray:
    """RISE as before stopping existed (eclique/RISE masks from the context's generator), the first
    ``use`` of ``draws`` masks."""
    net, x, target = case
    g = torch.Generator().manual_seed(seed * 1_000_003 + 29)
    grids = (torch.rand((draws, 1, s, s), generator=g) < p).float()
    cell = math.ceil(SIZE / s)
    shifts = torch.stack([torch.randint(0, cell, (draws,), generator=g) for _ in range(2)], 1)
    up = F.interpolate(grids[:use], size=((s + 1) * cell,) * 2, mode="bilinear", align_corners=False)
    masks = torch.stack(
        [m[:, a : a + SIZE, b : b + SIZE] for m, (a, b) in zip(up, shifts[:use].tolist(), strict=True)]
    )
    with torch.no_grad():
        scores = torch.softmax(net(x * masks), 1)[:, target]
    saliency = torch.einsum("n,nhw->hw", scores, masks[:, 0]) / (use * p)
    return (saliency - saliency.min()).numpy()


# --- LIME ----------------------------------------------------------------------------------------


def test_lime_stops_early_on_an_easy_case_with_the_full_runs_map(case):
    maps, notes = run(case, "lime", samples=1000)
    count = used(notes, "samples")
    assert notes[0].startswith(f"LIME stopped at {count} of 1000 samples")
    assert 200 <= count < 1000 and count % 100 == 0
    full, full_notes = run(case, "lime", samples=1000, converge=False)
    assert used(full_notes, "samples") == 1000 and "convergence stop off" in full_notes[0]
    assert pearson(maps[0], full[0]) > 0.99  # measured: 0.998 at 600 samples


def test_lime_without_convergence_uses_every_sample_as_before(case):
    maps, _ = run(case, "lime", samples=300, converge=False)
    assert differ(maps[0], plain_lime(case, 300, 300)) < 1e-4


def test_a_stopped_lime_map_is_the_plain_map_of_the_samples_it_used(case):
    maps, notes = run(case, "lime", samples=1000)
    count = used(notes, "samples")
    assert differ(maps[0], plain_lime(case, 1000, count)) < 1e-4
    # One step fewer is a different map: the count in the note is the one the map used.
    assert differ(maps[0], plain_lime(case, 1000, count - 100)) > 1e-2


def test_lime_with_the_same_seed_gives_the_same_map(case):
    a, notes_a = run(case, "lime", seed=3)
    b, notes_b = run(case, "lime", seed=3)
    c, _ = run(case, "lime", seed=4)
    assert np.array_equal(a, b) and notes_a == notes_b
    assert not np.array_equal(a, c)


def test_lime_with_several_targets_stops_when_every_target_settled(case):
    singles = [used(run(case, "lime", targets=[t])[1], "samples") for t in (1, 2)]
    maps, notes = run(case, "lime", targets=[1, 2])
    both = used(notes, "samples")
    assert min(singles) < max(singles) <= both < 1000  # measured: 800 and 700 alone, 800 together
    for i, t in enumerate((1, 2)):
        alone, _ = run(case, "lime", targets=[t], samples=both, converge=False)
        assert differ(maps[i], alone[0]) < 1e-5


def test_lime_that_cannot_settle_uses_every_sample(case):
    """A tolerance nothing meets: every sample is used and the note says why."""
    maps, notes = run(case, "lime", samples=400, tolerance=0.0)
    assert used(notes, "samples") == 400 and "did not settle" in notes[0]
    full, _ = run(case, "lime", samples=400, converge=False)
    assert differ(maps, full) < 1e-5


# --- RISE: the region network, masks of 4 x 4 cells (8 px) -----------------------------------


def test_rise_stops_early_with_the_full_runs_map(region):
    maps, notes = run(region, "rise", cells=4)
    count = used(notes, "masks")
    assert notes[0].startswith(f"RISE stopped at {count} of 2000 masks")
    assert 500 <= count < 2000 and count % 100 == 0
    full, full_notes = run(region, "rise", cells=4, converge=False)
    assert used(full_notes, "masks") == 2000 and "convergence stop off" in full_notes[0]
    assert pearson(maps[0], full[0]) > 0.99  # measured: 0.997 at 1,100 masks


def test_rise_without_convergence_uses_every_mask_as_before(region):
    maps, _ = run(region, "rise", masks=600, cells=4, converge=False)
    assert differ(maps[0], plain_rise(region, 600, 600, s=4)) < 1e-4


def test_a_stopped_rise_map_is_the_plain_map_of_the_masks_it_used(region):
    maps, notes = run(region, "rise", cells=4)
    count = used(notes, "masks")
    assert differ(maps[0], plain_rise(region, 2000, count, s=4)) < 1e-4
    assert differ(maps[0], plain_rise(region, 2000, count - 100, s=4)) > 1e-2


def test_rise_with_the_same_seed_gives_the_same_map(region):
    a, notes_a = run(region, "rise", seed=3, cells=4)
    b, notes_b = run(region, "rise", seed=3, cells=4)
    c, _ = run(region, "rise", seed=4, cells=4)
    assert np.array_equal(a, b) and notes_a == notes_b and "stopped at" in notes_a[0]
    assert not np.array_equal(a, c)


def test_rise_that_cannot_settle_uses_every_mask(region):
    maps, notes = run(region, "rise", masks=800, cells=4, tolerance=0.0)
    assert used(notes, "masks") == 800 and "did not settle" in notes[0]
    full, _ = run(region, "rise", masks=800, cells=4, converge=False)
    assert differ(maps, full) < 1e-5


def test_rise_and_lime_stop_on_a_volume_too():
    net = Region((slice(2, 6), slice(4, 12), slice(6, 14)))
    x = 1 + 0.1 * torch.randn(1, 1, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    for method_id, params in (("rise", {"cells": 4}), ("lime", {"superpixels": 30})):
        method = get_method(method_id, **params)
        with ExplainContext(net, None, x, task="multiclass", input_grads=False) as ctx:
            maps = method.compute(ctx, [0])
        assert maps.shape == (1, 1, 8, 16, 16) and torch.isfinite(maps).all()
        assert "stopped at" in method.map_notes(0)[0], method_id
        strength = maps[0, 0].clamp(min=0)
        assert strength[2:6, 4:12, 6:14].mean() > 2 * strength[:, :, :4].mean(), method_id  # the box
