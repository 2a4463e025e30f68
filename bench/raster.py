"""Median preprocessing time per sample over the UNIPEN dev file: server.raster against a
straightforward scikit-image baseline (draw on a large canvas, dilate, crop, resize, shift by
centre of mass), measured in the same run.

    .venv/bin/python bench/raster.py [--repeats 5] [--baseline-samples 300]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.draw import line
from skimage.morphology import dilation, disk
from skimage.transform import resize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import machine_line
from convert.data import UNIPEN_FILE, load_strokes
from server.raster import as_strokes, rasterize, rasterize_batch


def baseline(strokes: list[Any], canvas: int = 512) -> npt.NDArray[np.float32]:
    """The obvious way: 1-px lines on a big canvas, dilate, crop, resize to 20x20, centre."""
    pts = [np.asarray(s, np.float64) for s in strokes]
    allp = np.concatenate(pts)
    lo, span = allp.min(0), max(np.ptp(allp, axis=0).max(), 1e-9)
    img = np.zeros((canvas, canvas), np.float32)
    for s in pts:
        q = np.rint((s - lo) / span * (canvas - 1)).astype(int)
        for (x0, y0), (x1, y1) in itertools.pairwise(q):
            rr, cc = line(y0, x0, y1, x1)  # type: ignore[no-untyped-call]
            img[rr, cc] = 1.0
        img[q[:, 1], q[:, 0]] = 1.0
    img = dilation(img, disk(canvas // 40))  # type: ignore[no-untyped-call]
    rows, cols = np.nonzero(img)
    crop = img[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    small = resize(  # type: ignore[no-untyped-call]
        crop, (max(1, round(h * scale)), max(1, round(w * scale))), anti_aliasing=True
    )
    out = np.zeros((28, 28), np.float32)
    top, left = (28 - small.shape[0]) // 2, (28 - small.shape[1]) // 2
    out[top : top + small.shape[0], left : left + small.shape[1]] = small
    cy, cx = ndimage.center_of_mass(out)
    return np.asarray(ndimage.shift(out, (14 - cy, 14 - cx), order=1), np.float32)


def per_sample_us(fn: Callable[[Any], Any], samples: list[Any]) -> float:
    """Median over samples of one call's wall time, in microseconds."""
    times = []
    for strokes in samples:
        t0 = time.perf_counter()
        fn(strokes)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def batched_us(samples: list[Any], batch: int) -> float:
    """Median over batches of the wall time per drawing of one rasterize_batch call."""
    checked = [as_strokes(s) for s in samples]
    times = []
    for i in range(0, len(checked) - batch + 1, batch):
        t0 = time.perf_counter()
        rasterize_batch(checked[i : i + batch])
        times.append((time.perf_counter() - t0) / batch)
    return statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--baseline-samples",
        type=int,
        default=300,
        help="the baseline is slow; time it on a subset",
    )
    ap.add_argument("--strokes", type=Path, default=UNIPEN_FILE)
    args = ap.parse_args()
    samples = [s.strokes for s in load_strokes(args.strokes)]
    subset = samples[:: max(1, len(samples) // args.baseline_samples)][: args.baseline_samples]
    ours, batched, base = [], [], []
    for _ in range(args.repeats):
        ours.append(per_sample_us(rasterize, samples))
        batched.append(batched_us(samples, 32))
        base.append(per_sample_us(baseline, subset))
    o, b, ob = statistics.median(ours), statistics.median(base), statistics.median(batched)
    print(machine_line())
    print(f"| preprocessing | samples | median us/sample ({args.repeats} runs) | vs baseline |")
    print("|---|---:|---:|---:|")
    print(f"| server.raster.rasterize | {len(samples)} | {o:.0f} | {b / o:.0f}x faster |")
    print(f"| rasterize_batch, 32 per call | {len(samples)} | {ob:.0f} | {b / ob:.0f}x faster |")
    print(f"| skimage baseline (512 px, dilate, resize, shift) | {len(subset)} | {b:.0f} | 1x |")


if __name__ == "__main__":
    main()
