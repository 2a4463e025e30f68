"""How honest can a live guess's probability be? A study on the leave-one-source-out fold
models (`python -m convert loso`): each fold's int8 model on its held-out source's digits,
complete and at 25/50/75% of their points. For each of those moments, and for the four
pooled (every guess a drawer sees at those moments: the live ECE), the ECE (15 bins, top-1)
of:

- served: the fold's own temperature (what the server reports today);
- one map: a two-parameter logistic map of the top-1 probability's logit, fitted on the other
  seven sources' complete digits and prefixes together (a server can apply it: it needs
  nothing but the ink);
- ink features: the same with the ink's shape as well (ink length over box size, stroke
  count, aspect, the top-two logit gap, the not-a-digit logit);
- per moment: one map per moment, fitted on the other sources at that same moment. A live
  server cannot do this (it would need to know how much of the digit is still to come); it
  shows what calibration could reach if it could.

Every map is fitted without the source it is measured on (nested leave-one-source-out).

    .venv/bin/python bench/calibration.py [--folds runs/loso-v6]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import machine_line
from convert.augment import as_arrays, prefix
from convert.data import UNIPEN_FILE, load_strokes
from convert.evaluate import ece, render
from server.model import load_model, scores_from_logits

MOMENTS = (0.25, 0.5, 0.75, 1.0)
Arr = npt.NDArray[Any]


def _shape(drawing: list[Arr]) -> list[float]:
    """Ink length over the box's longer side, stroke count, aspect: scale-free, so they do
    not depend on the device's units."""
    points = np.concatenate(drawing)
    length = sum(float(np.hypot(*np.diff(s, axis=0).T).sum()) for s in drawing if len(s) > 1)
    w, h = np.ptp(points, axis=0)
    return [
        np.log((length + 1e-3) / (max(w, h) + 1e-3)),
        np.log(len(drawing)),
        np.log((h + 1) / (w + 1)),
    ]


def measure(folds: Path) -> dict[str, dict[float, tuple[Arr, Arr, Arr]]]:
    """Per source, per moment: (features, top-1 correct, served top-1 probability)."""
    samples = [s for s in load_strokes(UNIPEN_FILE) if s.label is not None]
    out: dict[str, dict[float, tuple[Arr, Arr, Arr]]] = {}
    for path in sorted(folds.glob("model-*.tflite")):
        source = path.stem.removeprefix("model-")
        model = load_model(path, "cpu")
        held = [s for s in samples if s.source == source]
        labels = np.array([s.label for s in held])
        drawings = [as_arrays(s.strokes) for s in held]
        out[source] = {}
        for moment in MOMENTS:
            cut = drawings if moment == 1.0 else [prefix(d, moment) for d in drawings]
            images = render(cut)
            logits = np.concatenate(
                [model.logits(images[i : i + 128]) for i in range(0, len(images), 128)]
            )
            served = scores_from_logits(logits, model.temperature).digits  # what is served
            top = np.clip(served.max(axis=1), 1e-4, 1 - 1e-4)
            ranked = np.sort(logits[:, :10], axis=1)
            extra = np.column_stack(
                [
                    (ranked[:, -1] - ranked[:, -2]) / 10,
                    np.clip(logits[:, 10] - ranked[:, -1], -30, 30) / 10
                    if logits.shape[1] > 10
                    else np.zeros(len(logits)),
                ]
            )
            features = np.column_stack(
                [np.log(top / (1 - top)), np.ones(len(top)), [_shape(d) for d in cut], extra]
            )
            out[source][moment] = (features, served.argmax(axis=1) == labels, top)
        print(f"  {source}: {len(held)} digits", file=sys.stderr, flush=True)
    return out


def _fit(x: Arr, correct: Arr) -> Arr:
    def loss(w: Arr) -> float:
        q = np.clip(1 / (1 + np.exp(-(x @ w))), 1e-6, 1 - 1e-6)
        return float(-(correct * np.log(q) + (1 - correct) * np.log(1 - q)).mean())

    start = np.zeros(x.shape[1])
    start[0] = 1.0
    return np.asarray(minimize(loss, start, method="L-BFGS-B").x)


Method = Callable[[dict[str, dict[float, tuple[Arr, Arr, Arr]]], str, float], Arr]


def served(data: dict[str, dict[float, tuple[Arr, Arr, Arr]]], source: str, moment: float) -> Arr:
    return data[source][moment][2]


def _mapped(columns: int, per_moment: bool) -> Method:
    fitted: dict[tuple[str, float | None], Arr] = {}

    def method(
        data: dict[str, dict[float, tuple[Arr, Arr, Arr]]], source: str, moment: float
    ) -> Arr:
        key = (source, moment if per_moment else None)
        if key not in fitted:
            moments = (moment,) if per_moment else MOMENTS
            train = [data[s][m] for s in data if s != source for m in moments]
            x = np.concatenate([t[0][:, :columns] for t in train])
            fitted[key] = _fit(x, np.concatenate([t[1] for t in train]).astype(float))
        x = data[source][moment][0][:, :columns]
        return np.asarray(1 / (1 + np.exp(-(x @ fitted[key]))))

    return method


METHODS: dict[str, Method] = {
    "served": served,
    "one map": _mapped(2, False),
    "ink features": _mapped(7, False),
    "per moment (needs the future)": _mapped(2, True),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folds", type=Path, default=Path("runs/loso-v6"), help="fold models")
    args = ap.parse_args()
    data = measure(args.folds)
    print(f"{machine_line()}; {len(data)} folds from {args.folds}")
    header = ["method", "ECE 25%", "ECE 50%", "ECE 75%", "ECE complete", "ECE live (pooled)"]
    print("| " + " | ".join(header) + " |\n|" + "---|" + "---:|" * (len(header) - 1))
    for name, method in METHODS.items():
        cells, conf_all, correct_all = [], [], []
        for moment in MOMENTS:
            conf = np.concatenate([method(data, s, moment) for s in data])
            correct = np.concatenate([data[s][moment][1] for s in data])
            cells.append(f"{ece(conf, correct):.3f}")
            conf_all.append(conf)
            correct_all.append(correct)
        live = ece(np.concatenate(conf_all), np.concatenate(correct_all))
        print(f"| {name} | " + " | ".join(cells) + f" | {live:.3f} |")
    accuracy = [np.concatenate([data[s][m][1] for s in data]).mean() for m in MOMENTS]
    print("| (top-1 accuracy) | " + " | ".join(f"{a:.1%}" for a in accuracy) + " | |")


if __name__ == "__main__":
    main()
