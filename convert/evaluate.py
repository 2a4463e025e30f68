"""Accuracy of a .tflite model on MNIST test and on pen-stroke files, through the server's
own rasterizer and runtime wrapper, so what is measured is what is served.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from convert.data import load_mnist, load_strokes
from server.model import Model
from server.raster import rasterize

_BATCH = 128


def predict_all(model: Model, images: npt.NDArray[np.float32]) -> npt.NDArray[np.intp]:
    """Argmax predictions for (N, 28, 28) images in [0, 1], in batches."""
    out = [
        model.predict_batch(images[i : i + _BATCH]).argmax(axis=1)
        for i in range(0, len(images), _BATCH)
    ]
    return np.concatenate(out) if out else np.zeros(0, np.intp)


def confusion(labels: npt.NDArray[Any], predicted: npt.NDArray[Any]) -> list[list[int]]:
    """10x10 counts: row = true digit, column = predicted digit."""
    m = np.zeros((10, 10), np.int64)
    np.add.at(m, (labels.astype(np.intp), predicted.astype(np.intp)), 1)
    return m.tolist()


def evaluate_mnist(model: Model, mnist_dir: Path) -> dict[str, Any]:
    test = load_mnist(mnist_dir, "test")
    predicted = predict_all(model, test.images.astype(np.float32) / 255.0)
    return {
        "accuracy": float((predicted == test.labels).mean()),
        "count": len(test.labels),
        "confusion": confusion(test.labels, predicted),
    }


def evaluate_strokes(model: Model, path: Path) -> dict[str, Any]:
    """Accuracy on one strokes file, overall, per source and, when the model card names its
    training sources, on the sources the model never saw."""
    samples = [s for s in load_strokes(path) if s.label is not None]
    images = np.zeros((len(samples), 28, 28), np.float32)
    for i, sample in enumerate(samples):
        img = rasterize(sample.strokes)
        if img is not None:  # a sample with no ink stays blank and is scored as the model answers
            images[i] = img
    labels = np.array([s.label for s in samples], np.intp)
    sources = np.array([s.source for s in samples])
    predicted = predict_all(model, images)
    correct = predicted == labels
    result: dict[str, Any] = {
        "accuracy": float(correct.mean()) if len(samples) else None,
        "count": len(samples),
        "per_source": {
            src: {
                "accuracy": float(correct[sources == src].mean()),
                "count": int((sources == src).sum()),
            }
            for src in sorted(set(sources.tolist()))
        },
        "confusion": confusion(labels, predicted),
    }
    seen = model.card.get("train_sources")
    if seen is not None:
        unseen = ~np.isin(sources, seen)
        result["unseen_sources"] = sorted(set(sources[unseen].tolist()))
        result["unseen_accuracy"] = float(correct[unseen].mean()) if unseen.any() else None
        result["unseen_count"] = int(unseen.sum())
    return result


def single_inference_us(model: Model, repeats: int = 2000) -> float:
    """Median wall time of one single-image predict_batch call, in microseconds."""
    x = np.zeros((1, 28, 28), np.float32)
    x[0, 4:24, 13:15] = 1.0
    model.predict_batch(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.predict_batch(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


def evaluate(model: Model, mnist_dir: Path | None, strokes: list[Path]) -> dict[str, Any]:
    report: dict[str, Any] = {"model": str(model.path), "accelerator": model.accelerator}
    if mnist_dir is not None:
        mnist = evaluate_mnist(model, mnist_dir)
        report["mnist_accuracy"] = mnist["accuracy"]
        report["mnist"] = mnist
    report["strokes"] = {str(p): evaluate_strokes(model, p) for p in strokes}
    return report


def format_report(report: dict[str, Any]) -> str:
    """The human-readable form of `evaluate`'s report."""
    lines = [f"model {report['model']} on {report['accelerator']}"]
    if "mnist" in report:
        m = report["mnist"]
        lines.append(f"MNIST test: {m['accuracy']:.2%} of {m['count']}")
        lines += _format_confusion(m["confusion"])
    for path, r in report["strokes"].items():
        lines.append(f"{path}: {r['accuracy']:.2%} of {r['count']}")
        if r.get("unseen_accuracy") is not None:
            lines.append(
                f"  unseen sources {', '.join(r['unseen_sources'])}: "
                f"{r['unseen_accuracy']:.2%} of {r['unseen_count']}"
            )
        for src, s in r["per_source"].items():
            lines.append(f"  {src}: {s['accuracy']:.2%} of {s['count']}")
        lines += _format_confusion(r["confusion"])
    return "\n".join(lines)


def _format_confusion(matrix: list[list[int]]) -> list[str]:
    head = "  true\\pred " + " ".join(f"{d:>5}" for d in range(10))
    rows = [f"  {t:>9} " + " ".join(f"{n:>5}" for n in row) for t, row in enumerate(matrix)]
    return [head, *rows]
