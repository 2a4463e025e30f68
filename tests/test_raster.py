"""server/raster.py: literal strokes in, 28x28 MNIST-style images out; no server, no model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.io import imread

from convert.data import UNIPEN_FILE, load_strokes
from server.raster import (
    BOX,
    SIZE,
    InkError,
    Pen,
    as_strokes,
    ink_bounds,
    rasterize,
    rasterize_batch,
)
from tests.strokesets import GOLDEN, ONE, SEVEN, ZERO

GOLDEN_DIR = Path(__file__).parent / "golden"


def render(strokes: object) -> np.ndarray:
    img = rasterize(strokes)  # type: ignore[arg-type]
    assert img is not None
    return img


def centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    grid = np.arange(SIZE)
    mass = img.sum()
    return float(img.sum(axis=1) @ grid / mass), float(img.sum(axis=0) @ grid / mass)


def inked_extent(img: np.ndarray, threshold: float = 0.02) -> tuple[int, int]:
    rows = np.nonzero(img.max(axis=1) > threshold)[0]
    cols = np.nonzero(img.max(axis=0) > threshold)[0]
    return int(np.ptp(rows) + 1), int(np.ptp(cols) + 1)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_matches_golden_image(name: str) -> None:
    expected = imread(GOLDEN_DIR / f"{name}.png").astype(np.float32) / 255.0
    np.testing.assert_allclose(render(GOLDEN[name]), expected, atol=1.0 / 255 + 1e-6)


def test_output_is_28x28_float32_in_unit_range() -> None:
    img = render(SEVEN)
    assert img.shape == (28, 28) and img.dtype == np.float32
    assert img.min() == 0.0 and img.max() == 1.0


@pytest.mark.parametrize("scale", [1e-3, 0.5, 3.0, 1e6])
@pytest.mark.parametrize("shift", [(0.0, 0.0), (-1e4, 250.5), (3e7, -3e7)])
def test_invariant_to_translation_and_uniform_scale(
    scale: float, shift: tuple[float, float]
) -> None:
    base = render(ZERO)
    moved = [[[x * scale + shift[0], y * scale + shift[1]] for x, y in s] for s in ZERO]
    np.testing.assert_allclose(render(moved), base, atol=1e-4)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_centre_of_mass_at_centre(name: str) -> None:
    cy, cx = centre_of_mass(render(GOLDEN[name]))
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


def test_unipen_digits_are_centred_and_fit_the_box() -> None:
    samples = load_strokes(UNIPEN_FILE)[::50]
    for sample in samples:
        img = render(sample.strokes)
        cy, cx = centre_of_mass(img)
        assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5, sample.id
        assert max(inked_extent(img)) <= BOX + 1, sample.id


def test_longer_side_fills_the_box_keeping_aspect() -> None:
    tall = render([[[0, 0], [10, 100]]])  # a slanted 1, 10:1
    rows, cols = inked_extent(tall)
    assert BOX - 2 <= rows <= BOX + 1
    assert cols < rows / 2


@pytest.mark.parametrize("empty", [[], [[]], [[], []], ()])
def test_no_ink_gives_no_image(empty: object) -> None:
    assert rasterize(empty) is None  # type: ignore[arg-type]


def test_single_point_is_a_centred_pen_dot() -> None:
    dot = render([[[123.0, -45.0]]])
    rows, cols = inked_extent(dot)
    assert rows == cols and rows <= 5
    cy, cx = centre_of_mass(dot)
    assert (cy, cx) == pytest.approx((14.0, 14.0), abs=0.5)


def test_repeated_points_draw_the_same_dot_as_one_point() -> None:
    np.testing.assert_array_equal(render([[[5, 5]] * 50]), render([[[5, 5]]]))
    np.testing.assert_array_equal(render([[[5, 5]], [[5, 5]]]), render([[[5, 5]]]))


def test_repeated_points_inside_a_stroke_change_nothing() -> None:
    doubled = [[p for p in s for _ in range(3)] for s in SEVEN]
    np.testing.assert_allclose(render(doubled), render(SEVEN), atol=1e-6)


def test_vertical_one_keeps_pen_width() -> None:
    rows, cols = inked_extent(render(ONE))
    assert BOX - 2 <= rows <= BOX + 1
    assert cols <= 5  # pen width, not stretched into a block


def test_horizontal_stroke_keeps_pen_height() -> None:
    rows, cols = inked_extent(render([[[0, 7], [300, 7]]]))
    assert BOX - 2 <= cols <= BOX + 1 and rows <= 5


def test_strokes_of_one_point_mixed_with_lines() -> None:
    img = render([[[0, 0], [0, 100]], [[40, 50]]])  # a 1 with a separate dot
    assert img.sum() > render(ONE).sum()


def test_time_column_is_ignored() -> None:
    timed = [[[x, y, 1000.0 + i] for i, (x, y) in enumerate(s)] for s in SEVEN]
    np.testing.assert_array_equal(render(timed), render(SEVEN))


@pytest.mark.parametrize(
    "bad",
    [
        [[[0, 0], [float("nan"), 1]]],
        [[[0, float("inf")]]],
        [[[-float("inf"), 0]]],
        [[[1e39, 0], [0, 0]]],
        [[[0, -3.5e38]]],
    ],
)
def test_non_finite_or_out_of_float32_range_is_rejected(bad: object) -> None:
    with pytest.raises(InkError, match=r"finite|float32"):
        rasterize(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", [[[[0, "a"]]], [[[0, 1, 2, 3]]], [[0, 1]], [[[[0, 1]]]], [[[0, None]]]]
)
def test_malformed_points_are_rejected(bad: object) -> None:
    with pytest.raises(InkError):
        rasterize(bad)  # type: ignore[arg-type]


def test_extreme_but_valid_coordinates_still_draw() -> None:
    big = [[[x * 1e36, y * 1e36] for x, y in s] for s in SEVEN]
    np.testing.assert_allclose(render(big), render(SEVEN), atol=1e-4)


def test_ink_bounds_in_input_units() -> None:
    assert ink_bounds(as_strokes(SEVEN)) == (10.0, 10.0, 80.0, 95.0)


def test_thicker_pen_draws_more_ink() -> None:
    thin = rasterize(SEVEN, Pen(radius=1.0, soft=0.5))
    thick = rasterize(SEVEN, Pen(radius=2.0, soft=0.5))
    assert thin is not None and thick is not None
    assert thick.sum() > thin.sum() * 1.3


def test_unusable_pen_is_refused() -> None:
    with pytest.raises(ValueError, match="pen"):
        Pen(radius=0.2, soft=0.5)


def test_batch_gives_each_drawing_its_single_image() -> None:
    drawings = [s.strokes for s in load_strokes(UNIPEN_FILE)[:40]]
    batch = [as_strokes(d) for d in drawings]
    batch[3] = []  # no ink in the middle of a batch
    batch.insert(0, as_strokes([[[7, 7]]]))  # a dot
    images = rasterize_batch(batch)
    assert len(images) == len(batch) and images[4] is None
    for arrays, image in zip(batch, images, strict=True):
        if arrays:
            np.testing.assert_array_equal(image, render(arrays))


def test_empty_batch() -> None:
    assert rasterize_batch([]) == []
    assert rasterize_batch([[], []]) == [None, None]
