"""Before/after: run the benchmarks of two checkouts back to back, alternating, several
rounds; print the median of each figure and the ratio. Run it under the heavy-jobs lock as
a whole, so that nothing else heavy comes between the two sides.

`raster` and `model` run each checkout's own bench/*.py with PYTHONPATH set to it. `load`
runs one load generator, the after checkout's bench/load.py, against each checkout's server
(`--checkout`), so only the server differs. Ratios of runs taken back to back cancel most of
what else the machine is doing.

    flock /work/heavy.lock .venv/bin/python bench/compare.py --before /work/base --after .
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import machine_line

RUNS = {
    "raster": ["bench/raster.py", "--repeats", "3", "--baseline-samples", "10"],
    "model": ["bench/model.py", "--repeats", "3", "--calls", "1000"],
    "load": ["bench/load.py", "--levels", "1,10,100", "--idle", "0", "--seconds", "5"],
}


def figures(kind: str, text: str) -> dict[str, float]:
    """The numbers of one run's table, by name."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if kind == "raster" and line.startswith(("| server.raster", "| rasterize_batch")):
            out[f"raster: {cells[0]} (us/sample)"] = float(cells[2])
        elif kind == "model" and re.match(r"\| \d+ \|", line):
            out[f"model: batch {cells[0]} (us/call)"] = float(cells[1])
        elif kind == "load" and re.match(r"\| \d+ \| 0 \|", line):
            n = cells[0]
            out[f"load {n}: p50 latency (ms)"] = float(cells[2])
            out[f"load {n}: p99 latency (ms)"] = float(cells[3])
            out[f"load {n}: pred/s per drawer (median)"] = float(cells[4].split(",")[0])
            cpu = float(cells[7].split("%")[0])
            out[f"load {n}: server CPU (%)"] = cpu
            # from the total and the CPU, so checkouts whose table lacks the column compare too
            out[f"load {n}: predictions per server CPU-s"] = float(cells[5]) / (cpu / 100)
    return out


def run(tree: Path, kind: str, driver: Path) -> dict[str, float]:
    """One run of `kind` measuring `tree`; the load generator comes from `driver`."""
    cmd = [sys.executable, *RUNS[kind]]
    if kind == "load":
        cmd += ["--checkout", str(tree)]
        tree = driver
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=True)
    return figures(kind, done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, default=Path("."))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default=",".join(RUNS), help="which of raster,model,load")
    ap.add_argument("--levels", help="drawer counts for load (default: 1,10,100)")
    ap.add_argument("--seconds", help="drawing time per load level (default: 5)")
    args = ap.parse_args()
    if args.levels:
        RUNS["load"][RUNS["load"].index("--levels") + 1] = args.levels
    if args.seconds:
        RUNS["load"][RUNS["load"].index("--seconds") + 1] = args.seconds
    seen: dict[str, dict[str, list[float]]] = {
        "before": defaultdict(list),
        "after": defaultdict(list),
    }
    for _ in range(args.rounds):
        for kind in args.only.split(","):
            for side, tree in (("before", args.before), ("after", args.after)):
                for name, value in run(tree.resolve(), kind, args.after.resolve()).items():
                    seen[side][name].append(value)
    print(machine_line())
    print(f"# {args.rounds} rounds, before = {args.before}, after = {args.after}; medians")
    print("| figure | before | after | after / before |")
    print("|---|---:|---:|---:|")
    for name, values in seen["before"].items():
        b, a = statistics.median(values), statistics.median(seen["after"][name])
        print(f"| {name} | {_cell(b)} | {_cell(a)} | {a / b:.2f} |")


def _cell(value: float) -> str:
    """Counts in the thousands as whole numbers (3,889), the rest as measured (1.5, 83.9)."""
    return f"{value:,.0f}" if value >= 1000 else f"{value:g}"


if __name__ == "__main__":
    main()
