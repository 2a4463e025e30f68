"""Where should "not a digit" start? The leave-one-source-out fold models
(`python -m convert loso`), each on its held-out source's complete digits and its letters and
symbols that must be rejected (convert/labels.py), at a range of `reject_at` thresholds; then
a nested choice: for each source, the largest threshold at which the other seven sources
together reject at least `--target` of the must-reject letters, measured on that source.

    .venv/bin/python bench/rejection.py [--folds runs/loso-v6] [--target 0.91]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import machine_line
from convert.augment import as_arrays
from convert.data import LETTERS_FILE, UNIPEN_FILE, load_mnist, load_strokes
from convert.evaluate import render, scores_all
from convert.labels import group
from server.model import load_model

Arr = npt.NDArray[Any]
GRID = np.round(np.arange(0.20, 0.61, 0.01), 2)
SHOWN = (0.3, 0.35, 0.4, 0.45, 0.5)


def _not_digit(model: Any, samples: list[Any]) -> Arr:
    return scores_all(model, render([as_arrays(s.strokes) for s in samples])).not_digit


def measure(folds: Path) -> tuple[dict[str, tuple[Arr, Arr]], dict[str, Arr]]:
    """Per held-out source: P(not a digit) of its digits and of its must-reject letters;
    and of MNIST test, per fold model."""
    digits = [s for s in load_strokes(UNIPEN_FILE) if s.label is not None]
    letters = [s for s in load_strokes(LETTERS_FILE) if s.name is not None]
    mnist = load_mnist(split="test").images.astype(np.float32) / 255.0
    out, scans = {}, {}
    for path in sorted(folds.glob("model-*.tflite")):
        source = path.stem.removeprefix("model-")
        model = load_model(path, "cpu")
        mine = [s for s in letters if s.source == source and group(str(s.name)) == "reject"]
        out[source] = (
            _not_digit(model, [s for s in digits if s.source == source]),
            _not_digit(model, mine),
        )
        scans[source] = scores_all(model, mnist).not_digit
        print(f"  {source}", file=sys.stderr, flush=True)
    return out, scans


def rates(data: dict[str, tuple[Arr, Arr]], sources: list[str], t: float) -> tuple[float, float]:
    """(digits rejected, must-reject letters rejected) pooled over `sources` at `t`."""
    d = np.concatenate([data[s][0] for s in sources]) >= t
    m = np.concatenate([data[s][1] for s in sources]) >= t
    return float(d.mean()), float(m.mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folds", type=Path, default=Path("runs/loso-v6"), help="fold models")
    ap.add_argument("--target", type=float, default=0.91, help="must-reject share to reach")
    args = ap.parse_args()
    data, scans = measure(args.folds)
    sources = sorted(data)
    print(f"{machine_line()}; {len(data)} folds from {args.folds}")
    print(
        "\n| reject_at | digits rejected | must-reject rejected | MNIST rejected (mean of folds) "
        "| per source (digits / must-reject) |"
    )
    print("|---:|---:|---:|---:|---|")
    for t in SHOWN:
        d, m = rates(data, sources, t)
        scan = float(np.mean([(scans[s] >= t).mean() for s in sources]))
        each = ", ".join(
            f"{s} {rates(data, [s], t)[0]:.1%} / {rates(data, [s], t)[1]:.1%}" for s in sources
        )
        print(f"| {t} | {d:.2%} | {m:.2%} | {scan:.2%} | {each} |")
    print(
        f"\nNested: each source's threshold chosen on the other seven "
        f"(must-reject >= {args.target})\n"
    )
    print("| held-out source | reject_at | digits rejected | must-reject rejected |")
    print("|---|---:|---:|---:|")
    held_d, held_m = [], []
    for s in sources:
        others = [o for o in sources if o != s]
        t = max((g for g in GRID if rates(data, others, g)[1] >= args.target), default=GRID[0])
        held_d.append(data[s][0] >= t)
        held_m.append(data[s][1] >= t)
        d, m = rates(data, [s], t)
        print(f"| {s} | {t:.2f} | {d:.2%} | {m:.2%} |")
    d, m = float(np.concatenate(held_d).mean()), float(np.concatenate(held_m).mean())
    print(f"| pooled | | **{d:.2%}** | **{m:.2%}** |")


if __name__ == "__main__":
    main()
