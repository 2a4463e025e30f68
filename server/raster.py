"""Pen strokes -> the 28x28 model input, following MNIST conventions.

Belongs here: validating coordinates, fitting the ink into 20x20, drawing it with an
MNIST-like pen, centring by centre of mass. Pure numpy; no I/O, no model, no server.
Training (convert/), evaluation and the server all call `rasterize`, so the model sees
exactly what it was trained on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: Bump when the output of `rasterize` changes for the same input; the model card records it.
RASTER_VERSION = 1

SIZE = 28
"""Side of the model input, in pixels."""
BOX = 20.0
"""The ink, pen width included, is scaled to fit a BOX x BOX square (MNIST: 20x20)."""
FLOAT32_MAX = float(np.finfo(np.float32).max)

_CANVAS = 44  # ink is drawn centred here, then a 28x28 window is cut around its centre of mass
_CENTRE = _CANVAS / 2.0
_STEP = 0.35  # spacing, in output pixels, of the pen positions sampled along each segment


class InkError(ValueError):
    """Strokes that cannot be drawn: non-finite or out-of-range coordinates, bad shape."""


@dataclass(frozen=True, slots=True)
class Pen:
    """A round pen: full ink within `radius - soft`, none beyond `radius + soft` (output px)."""

    radius: float = 1.35
    soft: float = 0.6

    def __post_init__(self) -> None:
        if not (0.0 < self.soft <= self.radius < BOX / 5):
            raise ValueError(f"unusable pen {self}")


MNIST_PEN = Pen()

Strokes = Iterable[npt.ArrayLike]
Image = npt.NDArray[np.float32]


def as_strokes(strokes: Strokes) -> list[npt.NDArray[np.float64]]:
    """Validate strokes and return them as (n, 2) float64 arrays, dropping empty strokes.

    Each stroke is a sequence of [x, y] or [x, y, t] points in any unit; t is ignored.
    Raises InkError for a bad shape, a non-finite coordinate or one beyond float32 range.
    """
    out = []
    for i, stroke in enumerate(strokes):
        try:
            arr = np.asarray(stroke, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InkError(f"stroke {i}: points must be numbers") from exc
        if arr.size == 0:
            continue
        if arr.ndim != 2 or arr.shape[1] not in (2, 3):
            raise InkError(f"stroke {i}: points must be [x, y] or [x, y, t]")
        xy = arr[:, :2]
        if not np.abs(xy).max() <= FLOAT32_MAX:  # one pass; NaN fails the comparison too
            if not np.isfinite(xy).all():
                raise InkError(f"stroke {i}: coordinates must be finite")
            raise InkError(f"stroke {i}: coordinates beyond float32 range")
        out.append(xy)
    return out


def ink_bounds(strokes: Sequence[npt.NDArray[np.float64]]) -> tuple[float, float, float, float]:
    """Bounding box (x0, y0, x1, y1) of validated, non-empty strokes, in input units."""
    points = np.concatenate(strokes) if len(strokes) > 1 else strokes[0]
    lo, hi = points.min(axis=0), points.max(axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def rasterize(strokes: Strokes, pen: Pen = MNIST_PEN) -> Image | None:
    """Draw strokes as a 28x28 float32 image in [0, 1] (1 = ink), or None if there is no ink.

    The ink's bounding box, pen width included, is scaled uniformly to fit 20x20; a stroke
    with no width (a vertical 1) or no extent at all (a dot) keeps the pen's width and is
    never stretched. The result is centred on its centre of mass, as MNIST digits are.
    """
    arrays = as_strokes(strokes)
    if not arrays:
        return None
    canvas = _draw(_fit(arrays, pen), pen)
    return _centre_by_mass(canvas)


def _fit(arrays: list[npt.NDArray[np.float64]], pen: Pen) -> list[npt.NDArray[np.float64]]:
    """Map strokes to canvas pixels: uniform scale into the box, bounding box centred."""
    x0, y0, x1, y1 = ink_bounds(arrays)
    span = max(x1 - x0, y1 - y0)
    # Pixels are inked out to radius + soft from a point; keep the inked rows and columns
    # of the longer side at ~20, as in MNIST.
    scale = (BOX - 2.0 * (pen.radius + pen.soft)) / span if span > 0 else 0.0
    mid = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0])
    return [(a - mid) * scale + _CENTRE for a in arrays]


def _pen_positions(arrays: list[npt.NDArray[np.float64]]) -> npt.NDArray[np.float64]:
    """Points every _STEP pixels along each stroke, with every stroke's own points."""
    starts, ends = [], []
    for a in arrays:
        starts.append(a[:-1])
        ends.append(a[1:])
    a0 = np.concatenate(starts)
    delta = np.concatenate(ends) - a0
    vertices = np.concatenate(arrays)
    if len(a0) == 0:
        return vertices
    steps = np.ceil(np.hypot(delta[:, 0], delta[:, 1]) / _STEP).astype(np.intp)
    steps = np.maximum(steps, 1)
    seg = np.repeat(np.arange(len(a0)), steps)
    first = np.cumsum(steps) - steps
    frac = (np.arange(len(seg)) - first[seg]) / steps[seg]
    along = a0[seg] + delta[seg] * frac[:, None]
    return np.concatenate([along, vertices])


def _draw(arrays: list[npt.NDArray[np.float64]], pen: Pen) -> Image:
    """Stamp the pen at each position; a pixel keeps the darkest ink any stamp gives it."""
    pos = _pen_positions(arrays)
    reach = int(np.ceil(pen.radius + pen.soft))
    offsets = np.arange(1 - reach, reach + 1)
    base = np.floor(pos)
    frac = pos - base
    # Separable distances: (N, k) per axis, combined once into the (N, k, k) stamp.
    dx2 = np.square(offsets - frac[:, 0, None])
    dy2 = np.square(offsets - frac[:, 1, None])
    dist = np.sqrt(dy2[:, :, None] + dx2[:, None, :])
    ink = np.clip((pen.radius + pen.soft - dist) * (0.5 / pen.soft), 0.0, 1.0)
    corner = base[:, 1].astype(np.intp) * _CANVAS + base[:, 0].astype(np.intp)
    stamp = offsets[:, None] * _CANVAS + offsets[None, :]
    flat = (corner[:, None, None] + stamp[None]).ravel()
    canvas = np.zeros(_CANVAS * _CANVAS, dtype=np.float64)
    np.maximum.at(canvas, flat, ink.ravel())
    return canvas.reshape(_CANVAS, _CANVAS).astype(np.float32)


def _centre_by_mass(canvas: Image) -> Image:
    """Cut the 28x28 window whose centre is nearest the ink's centre of mass."""
    mass = float(canvas.sum())
    grid = np.arange(_CANVAS, dtype=np.float64)
    cy = float(canvas.sum(axis=1) @ grid) / mass
    cx = float(canvas.sum(axis=0) @ grid) / mass
    top = _window_start(cy)
    left = _window_start(cx)
    return canvas[top : top + SIZE, left : left + SIZE].copy()


def _window_start(centre: float) -> int:
    # MNIST digits have their centre of mass at pixel index 14 (measured: 13.99, 14.01).
    start = int(np.floor(centre - SIZE / 2.0 + 0.5))
    return min(max(start, 0), _CANVAS - SIZE)
