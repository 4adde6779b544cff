"""Drawn shapes as masks, and mask outlines as pixel-edge segments."""

import numpy as np
import pytest

from viewer.io.drawn_shapes import rasterize
from viewer.io.overlay import outline_segments


def test_rectangle_and_ellipse_cover_the_pixels_whose_centres_they_contain():
    mask = rasterize("rectangle", [(5, 3), (2, 1)], 6, 6)  # corners in any order
    expected = np.zeros((6, 6), bool)
    expected[1:3, 2:5] = True
    assert np.array_equal(mask, expected)
    ellipse = rasterize("ellipse", [(0, 0), (100, 60)], 60, 100)
    assert ellipse.sum() == pytest.approx(np.pi * 50 * 30, rel=0.01)
    assert ellipse[30, 50] and not ellipse[0, 0]


def test_polygon_fill_matches_its_area():
    triangle = rasterize("polygon", [(0, 0), (200, 0), (0, 200)], 200, 200)
    assert triangle.sum() == pytest.approx(200 * 200 / 2, rel=0.02)
    with pytest.raises(ValueError, match="three points"):
        rasterize("polygon", [(0, 0), (1, 1)], 5, 5)


def test_outline_segments_trace_the_boundary_once():
    mask = np.zeros((6, 6), bool)
    mask[1:3, 2:5] = True
    segments = outline_segments(mask)
    lengths = np.abs(segments[:, 2] - segments[:, 0]) + np.abs(segments[:, 3] - segments[:, 1])
    assert lengths.sum() == 2 * (3 + 2)  # the perimeter in pixel edges
    assert sorted(map(tuple, segments.tolist())) == sorted(
        [(2, 1, 5, 1), (2, 3, 5, 3), (2, 1, 2, 3), (5, 1, 5, 3)]
    )
    assert outline_segments(np.zeros((3, 3), bool)).shape == (0, 4)
