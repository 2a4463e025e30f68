"""Pen strokes -> the 28x28 model input, following MNIST conventions.

Belongs here: validating coordinates, fitting the ink into 20x20, drawing it with an
MNIST-like pen, centring by centre of mass. Pure numpy; no I/O, no model, no server.
Training (convert/), evaluation and the server all call `rasterize`, so the model sees
exactly what it was trained on.
"""

from __future__ import annotations

import math
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
CANVAS = _CANVAS
"""Side of the canvas `centre_by_mass` cuts the 28x28 window from (server.images uses it too)."""
_CENTRE = _CANVAS / 2.0
PEN_STEP = 0.35  # spacing, in output pixels, of the pen positions sampled along each segment


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
Points = npt.NDArray[np.float64]  # one validated stroke: (n, 2) x, y
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
    return rasterize_batch([as_strokes(strokes)], pen)[0]


def rasterize_batch(batch: Sequence[Sequence[Points]], pen: Pen = MNIST_PEN) -> list[Image | None]:
    """`rasterize` for many drawings at once, each already validated by `as_strokes`.

    Every drawing gets exactly the image `rasterize` gives it (None for no ink); numpy works
    on the whole batch in one pass, so per-drawing overhead is paid once per batch.
    """
    inked = [i for i, arrays in enumerate(batch) if len(arrays)]
    out: list[Image | None] = [None] * len(batch)
    if inked:
        ink = _Ink([batch[i] for i in inked])
        images = centre_by_mass(_draw(ink, pen))
        for k, i in enumerate(inked):
            out[i] = images[k]
    return out


class _Ink:
    """All points of a batch of drawings in one array, with the drawing and stroke of each.

    Coordinates are kept as two rows, x and y (`xy`, shape (2, n)): numpy is fast along a
    long last axis and slow along a short one, and every step below works point-wise."""

    def __init__(self, drawings: list[Sequence[Points]]) -> None:
        strokes = [a for arrays in drawings for a in arrays]
        stroke_len = np.array([len(a) for a in strokes])
        per_drawing = np.array([len(arrays) for arrays in drawings])
        stroke_drawing = np.repeat(np.arange(len(drawings)), per_drawing)
        ends = np.cumsum(stroke_len)
        self.count = len(drawings)
        self.points = np.concatenate(strokes)
        self.xy = np.ascontiguousarray(self.points.T)
        self.drawing = np.repeat(stroke_drawing, stroke_len)
        self.joined = np.ones(len(self.points) - 1, dtype=bool)  # point i and i+1 share a stroke
        self.joined[ends[:-1] - 1] = False
        first_stroke = np.cumsum(per_drawing) - per_drawing
        self.first_point = (ends - stroke_len)[first_stroke]


def _fit(ink: _Ink, pen: Pen) -> npt.NDArray[np.float64]:
    """Map every point to canvas pixels, (2, n): each drawing scaled uniformly into the box,
    its bounding box centred."""
    lo = np.minimum.reduceat(ink.points, ink.first_point, axis=0)
    hi = np.maximum.reduceat(ink.points, ink.first_point, axis=0)
    span = (hi - lo).max(axis=1)
    # Pixels are inked out to radius + soft from a point; keep the inked rows and columns
    # of the longer side at ~20, as in MNIST.
    with np.errstate(divide="ignore"):
        scale = np.where(span > 0, (BOX - 2.0 * (pen.radius + pen.soft)) / span, 0.0)
    mid = np.ascontiguousarray(((lo + hi) / 2.0).T)
    return (ink.xy - mid[:, ink.drawing]) * scale[ink.drawing] + _CENTRE


def _pen_positions(
    ink: _Ink, xy: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.intp]]:
    """Points every PEN_STEP pixels along each stroke, with every stroke's own points, as
    (2, m), and the drawing each belongs to."""
    a0 = xy[:, :-1][:, ink.joined]
    delta = xy[:, 1:][:, ink.joined] - a0
    seg_drawing = ink.drawing[:-1][ink.joined]
    steps = np.ceil(np.hypot(delta[0], delta[1]) / PEN_STEP).astype(np.intp)
    steps = np.maximum(steps, 1)
    seg = np.repeat(np.arange(a0.shape[1]), steps)
    first = np.cumsum(steps) - steps
    frac = (np.arange(len(seg)) - first[seg]) / steps[seg]
    along = a0[:, seg] + delta[:, seg] * frac
    return np.concatenate([along, xy], axis=1), np.concatenate([seg_drawing[seg], ink.drawing])


def _draw(ink: _Ink, pen: Pen) -> npt.NDArray[np.float32]:
    """Stamp the pen at each position; a pixel keeps the darkest ink any stamp gives it.
    Returns (drawings, _CANVAS, _CANVAS).

    Ink falls with distance, so the darkest stamp of a pixel is its nearest pen position:
    the stamps only keep each pixel's least squared distance, and the ink is worked out
    once per pixel (float32, in place, positions on the last axis: this is the inference
    thread's hottest code)."""
    pos, drawing = _pen_positions(ink, _fit(ink, pen))
    reach = int(np.ceil(pen.radius + pen.soft))
    offsets = np.arange(1 - reach, reach + 1)
    base = np.floor(pos)
    frac = (pos - base).astype(np.float32)
    # Separable distances: (k, m) per axis, combined once into the (k, k, m) stamps.
    dx2 = np.square(offsets.astype(np.float32)[:, None] - frac[0])
    dy2 = np.square(offsets.astype(np.float32)[:, None] - frac[1])
    d2 = dy2[:, None, :] + dx2[None, :, :]
    cell = base.astype(np.intp)
    area = _CANVAS * _CANVAS
    corner = drawing * area + cell[1] * _CANVAS + cell[0]
    stamp = offsets[:, None] * _CANVAS + offsets[None, :]
    flat = (stamp[:, :, None] + corner).ravel()
    far = np.float32((pen.radius + pen.soft) ** 2)  # no ink from here on
    canvas = np.full(ink.count * area, far, dtype=np.float32)
    np.minimum.at(canvas, flat, d2.ravel())
    np.sqrt(canvas, out=canvas)
    np.subtract(np.float32(pen.radius + pen.soft), canvas, out=canvas)
    np.multiply(canvas, np.float32(0.5 / pen.soft), out=canvas)
    np.clip(canvas, np.float32(0.0), np.float32(1.0), out=canvas)
    return canvas.reshape(ink.count, _CANVAS, _CANVAS)


def centre_by_mass(canvas: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Cut from each (CANVAS, CANVAS) canvas the 28x28 window whose centre is nearest its
    centre of mass."""
    n = len(canvas)
    mass = canvas.reshape(n, -1).sum(axis=1).astype(np.float64)
    tops = map(_window_start, ((canvas.sum(axis=2) @ _GRID) / mass).tolist())
    lefts = map(_window_start, ((canvas.sum(axis=1) @ _GRID) / mass).tolist())
    return np.stack(
        [c[t : t + SIZE, x : x + SIZE] for c, t, x in zip(canvas, tops, lefts, strict=True)]
    )


def centre_one(canvas: npt.NDArray[np.float32]) -> Image:
    """`centre_by_mass` of one (CANVAS, CANVAS) canvas (an uploaded image, server/images.py),
    without a batch's overhead; the same window, pixel for pixel."""
    mass = float(canvas.sum())
    top = _window_start(float(canvas.sum(axis=1) @ _GRID) / mass)
    left = _window_start(float(canvas.sum(axis=0) @ _GRID) / mass)
    return np.ascontiguousarray(canvas[top : top + SIZE, left : left + SIZE])


_GRID = np.arange(_CANVAS, dtype=np.float64)


def _window_start(centre: float) -> int:
    """The window's first row (or column) for a centre of mass: on whole pixels, inside
    the canvas. MNIST digits have their centre of mass at pixel index 14 (measured: 13.99,
    14.01)."""
    return min(max(math.floor(centre - SIZE / 2.0 + 0.5), 0), _CANVAS - SIZE)
