"""How alike two maps are: rank correlation and structural similarity (numpy only)."""

from __future__ import annotations

import numpy as np


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (``scipy.stats.rankdata``'s default)."""
    flat = np.asarray(values, np.float64).ravel()
    order = np.argsort(flat, kind="mergesort")
    sorted_values = flat[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], flat.size]
    average = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    out = np.empty(flat.size)
    out[order] = np.repeat(average, ends - starts)
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation; 0 when either map is constant."""
    return float(spearman_matrix([a, b])[0, 1])


def spearman_matrix(maps) -> np.ndarray:
    """The symmetric ``(n, n)`` matrix of :func:`spearman` between every pair of ``maps``, each
    map ranked once (not once per pair: ranking is the cost, a sort of every pixel). The
    diagonal is 1; a constant map's correlations are 0."""
    centred = []
    for values in maps:
        r = ranks(values)
        r -= r.mean()
        centred.append((r, (r * r).sum()))
    n = len(centred)
    out = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            (ra, sa), (rb, sb) = centred[i], centred[j]
            denominator = np.sqrt(sa * sb)
            out[i, j] = out[j, i] = (ra * rb).sum() / denominator if denominator > 0 else 0.0
    return out


def _gaussian_filter(image: np.ndarray, sigma: float, truncate: float) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter`` with mode "reflect" (edge sample repeated), 2-D."""
    radius = int(truncate * sigma + 0.5)
    t = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (t / sigma) ** 2)
    kernel /= kernel.sum()
    out = np.pad(image, radius, mode="symmetric")
    # Each axis in turn, every row (column) at once: windows of the padded image times the kernel.
    out = np.lib.stride_tricks.sliding_window_view(out, kernel.size, axis=1) @ kernel
    return np.lib.stride_tricks.sliding_window_view(out, kernel.size, axis=0) @ kernel


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Mean SSIM of two 2-D maps (Wang et al. 2004): Gaussian window sigma 1.5, K1 0.01, K2 0.03,
    population covariances, borders cropped; equals scikit-image's ``structural_similarity`` with
    ``gaussian_weights=True, use_sample_covariance=False``."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    sigma, truncate = 1.5, 3.5

    def blur(x):
        return _gaussian_filter(x, sigma, truncate)

    ux, uy = blur(a), blur(b)
    vx = blur(a * a) - ux * ux
    vy = blur(b * b) - uy * uy
    vxy = blur(a * b) - ux * uy
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = int(truncate * sigma + 0.5)
    return float(s[pad:-pad, pad:-pad].mean())


def unit_scaled(x: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (zeros if constant): maps compared on one scale."""
    x = np.asarray(x, np.float64)
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def _box_mean(x: np.ndarray, size: int) -> np.ndarray:
    """Mean over a ``size`` x ``size`` window at every pixel, the edges mirrored (d c b a | a b c d):
    ``scipy.ndimage.uniform_filter(x, size)`` with its default mode "reflect", by summed areas."""
    r = size // 2
    padded = np.pad(x, r, mode="symmetric")
    c = np.cumsum(padded, axis=0)
    c = np.concatenate([np.zeros((1, c.shape[1])), c])
    rows = c[size:] - c[:-size]
    c = np.cumsum(rows, axis=1)
    c = np.concatenate([np.zeros((c.shape[0], 1)), c], axis=1)
    return (c[:, size:] - c[:, :-size]) / (size * size)


def structural_similarity(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, win_size: int = 7) -> float:
    """Mean SSIM with scikit-image's defaults: a uniform ``win_size`` window (7 x 7), sample
    covariances (N / (N - 1)), K1 0.01, K2 0.03, borders of half a window cropped. The stability
    protocol (Arun et al. 2021) names ``structural_similarity(a, b, data_range=1)`` as it is, so its
    numbers are comparable with theirs; :func:`ssim` (Gaussian window) is the other common form."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"two 2-D maps of one shape are needed, not {a.shape} and {b.shape}")
    if min(a.shape) < win_size:
        raise ValueError(f"maps of {a.shape[0]} x {a.shape[1]} are smaller than the {win_size} px window")
    n = win_size * win_size
    norm = n / (n - 1)
    ux, uy = _box_mean(a, win_size), _box_mean(b, win_size)
    vx = norm * (_box_mean(a * a, win_size) - ux * ux)
    vy = norm * (_box_mean(b * b, win_size) - uy * uy)
    vxy = norm * (_box_mean(a * b, win_size) - ux * uy)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = (win_size - 1) // 2
    return float(s[pad:-pad, pad:-pad].mean())
