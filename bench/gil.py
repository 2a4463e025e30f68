"""Does the model runtime let the event loop run while it infers? A pure-Python counting
loop runs alone for a few seconds, then beside a thread calling the shipped model back to
back (batch 32, real-size inputs); the ratio of the two counts is printed. Near 1: `invoke`
releases the GIL; about 0.5 or less: it holds it.

    .venv/bin/python bench/gil.py [--seconds 2] [--batch 32]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import machine_line
from server.model import DEFAULT_MODEL, load_model


def count(seconds: float) -> int:
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    model = load_model(DEFAULT_MODEL, "cpu")
    images = np.random.default_rng(0).random((args.batch, 28, 28), dtype=np.float32)
    stop = threading.Event()
    calls = 0

    def infer() -> None:
        nonlocal calls
        while not stop.is_set():
            model.logits(images)
            calls += 1

    alone = count(args.seconds)
    thread = threading.Thread(target=infer)
    thread.start()
    beside = count(args.seconds)
    stop.set()
    thread.join()
    print(machine_line())
    print("| loop alone (counts) | loop beside the model thread | ratio | model calls beside |")
    print("|---:|---:|---:|---:|")
    print(f"| {alone:,} | {beside:,} | {beside / alone:.2f} | {calls} |")


if __name__ == "__main__":
    main()
