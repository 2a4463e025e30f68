"""What one prediction costs, and a bound on it, so that no drawing can make the inference
thread (or its memory) its own.

Belongs here: estimating the rasterizer's work for some ink (it stamps the pen every
PEN_STEP output pixels along every stroke, so its work grows with the ink's length relative
to its size: 20000 random points cost ~500,000 stamps, a digit ~200), and thinning ink beyond
MAX_STAMPS before it is drawn. Pure numpy; the rasterizer itself is untouched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from server.raster import BOX, MNIST_PEN, PEN_STEP

MAX_STAMPS = 8192  # ~4 ms of rasterizing on one core; a digit needs 100-300
FREE_POINTS = 256  # ink this small is never worth estimating: at most ~6,500 stamps
_FIT = BOX - 2.0 * (MNIST_PEN.radius + MNIST_PEN.soft)  # output pixels the ink's span maps to

Stroke = npt.NDArray[np.float64]


def stamps(strokes: Sequence[Stroke]) -> float:
    """About how many pen stamps the rasterizer makes for these validated strokes."""
    points = sum(len(s) for s in strokes)
    if points == 0:
        return 0.0
    xy = np.concatenate(strokes) if len(strokes) > 1 else strokes[0]
    span = float(np.ptp(xy, axis=0).max())
    if span <= 0:
        return float(points)
    length = sum(float(np.hypot(*np.diff(s, axis=0).T).sum()) for s in strokes if len(s) > 1)
    return points + length * (_FIT / span) / PEN_STEP


def bounded(strokes: Sequence[Stroke], limit: float = MAX_STAMPS) -> Sequence[Stroke]:
    """The strokes to rasterize: themselves when they cost at most `limit` stamps (every
    drawing of a digit does), else every k-th point of each (ends kept), thinner until they
    do. Only ink no one draws by hand is thinned; its bounding box is computed elsewhere."""
    if sum(len(s) for s in strokes) <= FREE_POINTS:
        return strokes
    cost = stamps(strokes)
    while cost > limit:
        k = max(2, math.ceil(cost / limit))
        strokes = [s if len(s) <= 2 else np.concatenate([s[:-1:k], s[-1:]]) for s in strokes]
        cost = stamps(strokes)
    return strokes


def job_cost(points: int) -> float:
    """A prediction's cost for the batcher's budget, in stamps, from its ink's point count
    (known on the event loop without touching the ink): a digit's points are 3-5 stamps
    each, and no drawing costs more than MAX_STAMPS once `bounded`."""
    return float(min(MAX_STAMPS, 64 + 4 * points))
