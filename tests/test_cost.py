"""server/cost.py: the rasterizer's work for some ink, and thinning ink beyond the bound."""

from __future__ import annotations

import numpy as np

from server.cost import FREE_POINTS, MAX_STAMPS, bounded, job_cost, stamps
from server.raster import as_strokes, rasterize_batch
from tests.serverkit import unipen_digits


def random_ink(points: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 1000, (points, 2)).astype(np.float64)]


def test_a_digit_is_cheap_and_left_alone() -> None:
    for digit in unipen_digits(20):
        strokes = as_strokes(digit.strokes)
        assert 50 < stamps(strokes) < 1000
        assert bounded(strokes) is strokes


def test_a_straight_line_costs_its_length_in_stamps() -> None:
    line = [np.array([[0.0, 0.0], [100.0, 0.0]])]  # spans the box: 16.1 px, a stamp per 0.35
    assert stamps(line) == 2 + 16.1 / 0.35
    assert stamps([np.array([[5.0, 5.0]])]) == 1.0  # a dot
    assert stamps([]) == 0.0


def test_random_ink_is_thinned_under_the_bound_and_still_drawn() -> None:
    ink = random_ink(20000)
    assert stamps(ink) > 50 * MAX_STAMPS
    thin = bounded(ink)
    assert stamps(thin) <= MAX_STAMPS
    assert (thin[0][0] == ink[0][0]).all() and (thin[0][-1] == ink[0][-1]).all()
    image = rasterize_batch([thin])[0]
    assert image is not None and image.max() > 0.5


def test_small_ink_is_never_estimated() -> None:
    ink = random_ink(FREE_POINTS)  # the worst a small drawing can do is bounded anyway
    assert bounded(ink) is ink
    assert stamps(ink) < MAX_STAMPS


def test_job_cost_grows_with_points_up_to_the_bound() -> None:
    assert job_cost(0) == 64
    assert job_cost(45) == 64 + 180
    assert job_cost(20000) == MAX_STAMPS
