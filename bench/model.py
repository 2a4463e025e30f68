"""Inference time of the shipped int8 model through server.model on one CPU thread:
median wall time of predict_batch at batch 1, 8 and 32, repeated, with per-sample cost
relative to batch 1 measured in the same run. Inputs are real UNIPEN renders.

    .venv/bin/python bench/model.py [--model models/digits.tflite] [--repeats 5] [--calls 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import machine_line
from convert.data import UNIPEN_FILE, load_strokes
from server.model import DEFAULT_MODEL, Model, load_model
from server.raster import rasterize

BATCHES = (1, 8, 32)


def median_call_us(model: Model, images: npt.NDArray[np.float32], batch: int, calls: int) -> float:
    times = []
    for i in range(calls):
        start = (i * batch) % (len(images) - batch)
        x = images[start : start + batch]
        t0 = time.perf_counter()
        model.predict_batch(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu", "auto"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args()
    model = load_model(args.model, args.accelerator, threads=1)
    samples = load_strokes(UNIPEN_FILE)[::5]
    images = np.stack([img for s in samples if (img := rasterize(s.strokes)) is not None])
    for batch in BATCHES:  # warm every runner
        model.predict_batch(images[:batch])
    runs: dict[int, list[float]] = {b: [] for b in BATCHES}
    for _ in range(args.repeats):
        for batch in BATCHES:
            runs[batch].append(median_call_us(model, images, batch, max(200, args.calls // batch)))
    print(machine_line())
    print(
        f"# {model.path.name} ({model.path.stat().st_size} bytes), "
        f"{model.runtime}, {model.accelerator}, 1 thread"
    )
    print(
        f"| batch | median us/call ({args.repeats} runs) | us/sample | per-sample cost vs batch 1 |"
    )
    print("|---:|---:|---:|---:|")
    single = statistics.median(runs[1])
    for batch in BATCHES:
        per_call = statistics.median(runs[batch])
        per_sample = per_call / batch
        print(f"| {batch} | {per_call:.1f} | {per_sample:.1f} | {per_sample / single:.2f} |")


if __name__ == "__main__":
    main()
