"""Training inputs drawn through the server's own rasterizer.

Belongs here: turning stroke samples into many plausible drawings (slant, rotation, aspect,
pen width, jitter) and renormalising MNIST scans the way `server.raster` normalises ink, so
the model learns what the server will show it. numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from convert.data import StrokeSample
from server.raster import MNIST_PEN, Pen, rasterize


def _random_affine(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    angle = np.deg2rad(rng.uniform(-12, 12))
    shear = rng.uniform(-0.35, 0.35)
    aspect = np.exp(rng.uniform(-0.25, 0.25))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shr = np.array([[1.0, shear], [0.0, 1.0]])
    stretch = np.diag([aspect, 1.0 / aspect])
    m: npt.NDArray[np.float64] = rot @ shr @ stretch
    return m


def _random_pen(rng: np.random.Generator) -> Pen:
    radius = float(np.clip(rng.normal(MNIST_PEN.radius, 0.25), 0.8, 2.2))
    return Pen(radius=radius, soft=min(MNIST_PEN.soft, radius))


def render_augmented(
    samples: Sequence[StrokeSample], copies: int, seed: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """`copies` random drawings of each sample (the first copy unaltered), as uint8 28x28."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for sample in samples:
        strokes = [np.asarray(s, np.float64).reshape(-1, 2) for s in sample.strokes]
        for k in range(copies):
            if k == 0:
                img = rasterize(strokes)
            else:
                m = _random_affine(rng)
                span = max(float(np.ptp(np.concatenate(strokes), axis=0).max()), 1e-9)
                jitter = rng.uniform(0, 0.01) * span
                moved = [s @ m.T + rng.normal(0, jitter, s.shape) for s in strokes]
                img = rasterize(moved, _random_pen(rng))
            if img is None:
                continue
            images.append(np.rint(img * 255).astype(np.uint8))
            labels.append(sample.label)
    return np.stack(images), np.asarray(labels, np.uint8)
