"""Accuracy, rejection and calibration of a .tflite model on MNIST test and on pen-stroke
files (digits, or letters and symbols), through the server's own rasterizer, runtime wrapper
and verdict, so what is measured is what is served.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from convert.augment import as_arrays, prefix
from convert.data import StrokeSample, load_mnist, load_strokes
from convert.labels import group
from server.model import Model, Scores
from server.raster import rasterize_batch
from server.verdict import VERDICTS, Thresholds, decide

_BATCH = 128
_ECE_BINS = 15
PREFIX_FRACTIONS = (0.25, 0.5, 0.75)


def scores_all(model: Model, images: npt.NDArray[np.float32]) -> Scores:
    """The model's scores for (N, 28, 28) images in [0, 1], in batches."""
    parts = [model.predict_scores(images[i : i + _BATCH]) for i in range(0, len(images), _BATCH)]
    if not parts:
        return Scores(np.zeros((0, 10), np.float32), np.zeros(0, np.float32))
    return Scores(
        np.concatenate([p.digits for p in parts]), np.concatenate([p.not_digit for p in parts])
    )


def predict_all(model: Model, images: npt.NDArray[np.float32]) -> npt.NDArray[np.intp]:
    """Argmax digit predictions for (N, 28, 28) images in [0, 1], in batches."""
    predicted: npt.NDArray[np.intp] = scores_all(model, images).digits.argmax(axis=1)
    return predicted


def confusion(labels: npt.NDArray[Any], predicted: npt.NDArray[Any]) -> list[list[int]]:
    """10x10 counts: row = true digit, column = predicted digit."""
    m = np.zeros((10, 10), np.int64)
    np.add.at(m, (labels.astype(np.intp), predicted.astype(np.intp)), 1)
    return m.tolist()


def ece(confidence: npt.NDArray[Any], correct: npt.NDArray[Any], bins: int = _ECE_BINS) -> float:
    """Expected calibration error of the top-1 probability: 15 equal-width bins, each
    |accuracy - mean confidence| weighted by its share of the samples."""
    if len(confidence) == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            gap = abs(float(correct[inside].mean()) - float(confidence[inside].mean()))
            total += gap * float(inside.mean())
    return total


def _verdicts(scores: Scores, thresholds: Thresholds) -> npt.NDArray[np.str_]:
    top = scores.digits.max(axis=1)
    return np.array(
        [decide(float(p), float(n), thresholds) for p, n in zip(top, scores.not_digit, strict=True)]
    )


def evaluate_mnist(model: Model, mnist_dir: Path, thresholds: Thresholds) -> dict[str, Any]:
    test = load_mnist(mnist_dir, "test")
    scores = scores_all(model, test.images.astype(np.float32) / 255.0)
    predicted = scores.digits.argmax(axis=1)
    rejected = _verdicts(scores, thresholds) == "not_digit"
    return {
        "accuracy": float((predicted == test.labels).mean()),
        "accuracy_with_rejection": float(((predicted == test.labels) & ~rejected).mean()),
        "rejected": float(rejected.mean()),
        "count": len(test.labels),
        "confusion": confusion(test.labels, predicted),
    }


def render(drawings: list[Any]) -> npt.NDArray[np.float32]:
    """Drawings as model inputs; one that cannot be drawn stays blank and is scored as the
    model answers."""
    images = np.zeros((len(drawings), 28, 28), np.float32)
    for i, img in enumerate(rasterize_batch(drawings)):
        if img is not None:
            images[i] = img
    return images


def _rate(mask: npt.NDArray[np.bool_]) -> float | None:
    return float(mask.mean()) if len(mask) else None


def _prefix_report(
    model: Model,
    drawings: list[Any],
    labels: npt.NDArray[np.intp],
    thresholds: Thresholds,
    complete: tuple[npt.NDArray[Any], npt.NDArray[np.bool_]],
) -> tuple[dict[str, float | None], dict[str, Any], float | None]:
    """ECE, accuracy, mean confidence and verdicts with 25/50/75% of each digit's points, and
    the live ECE: over the complete digits (`complete`: their top-1 probabilities and
    correctness) and the three prefixes together, each digit's guess as a drawer sees it at
    those four moments."""
    eces: dict[str, float | None] = {}
    detail: dict[str, Any] = {}
    seen_top, seen_correct = [complete[0]], [complete[1]]
    for f in PREFIX_FRACTIONS:
        scores = scores_all(model, render([prefix(d, f) for d in drawings]))
        top = scores.digits.max(axis=1)
        correct = scores.digits.argmax(axis=1) == labels
        seen_top.append(top)
        seen_correct.append(correct)
        verdicts = _verdicts(scores, thresholds)
        eces[str(f)] = _nullable(ece(top, correct))
        detail[str(f)] = {
            "accuracy": _rate(correct),
            "confidence": float(top.mean()) if len(top) else None,
            "verdicts": {v: _rate(verdicts == v) for v in VERDICTS},
        }
    live = _nullable(ece(np.concatenate(seen_top), np.concatenate(seen_correct)))
    return eces, detail, live


def _nullable(x: float) -> float | None:
    return None if np.isnan(x) else x


def evaluate_strokes(model: Model, path: Path, thresholds: Thresholds) -> dict[str, Any]:
    """One strokes file: accuracy (a digit rejected as not a digit is wrong; null when no
    label is a digit), rejection, calibration on complete and partial digits, per label,
    per source and, for letters and symbols, per look-alike group."""
    return evaluate_samples(model, load_strokes(path), thresholds)


def evaluate_samples(
    model: Model, all_samples: list[StrokeSample], thresholds: Thresholds
) -> dict[str, Any]:
    """`evaluate_strokes` for samples already read; unlabelled samples are skipped."""
    samples = [s for s in all_samples if s.name is not None]
    drawings = [as_arrays(s.strokes) for s in samples]
    scores = scores_all(model, render(drawings))
    verdicts = _verdicts(scores, thresholds)
    rejected = verdicts == "not_digit"
    names = np.array([s.name for s in samples], dtype=object)
    is_digit = np.array([s.label is not None for s in samples], dtype=bool)
    labels = np.array([-1 if s.label is None else s.label for s in samples], np.intp)
    sources = np.array([s.source for s in samples])
    top = scores.digits.max(axis=1)
    predicted = scores.digits.argmax(axis=1)
    correct = (predicted == labels) & ~rejected
    result: dict[str, Any] = {
        "count": len(samples),
        "accuracy": _rate(correct[is_digit]),
        "rejected": _rate(rejected),
        "unsure": _rate(verdicts == "unsure"),
        "per_label": {
            name: {
                "count": int((names == name).sum()),
                "accuracy": _rate(correct[names == name]) if name.isdigit() else None,
                "rejected": _rate(rejected[names == name]),
            }
            for name in sorted(set(names.tolist()))
        },
        "per_source": {
            src: {
                "accuracy": _rate(correct[(sources == src) & is_digit]),
                "count": int((sources == src).sum()),
                "rejected": _rate(rejected[sources == src]),
            }
            for src in sorted(set(sources.tolist()))
        },
        "ece": _nullable(ece(top[is_digit], (predicted == labels)[is_digit])),
    }
    digit_drawings = [d for d, keep in zip(drawings, is_digit, strict=True) if keep]
    result["ece_prefix"], result["prefix"], result["ece_live"] = _prefix_report(
        model,
        digit_drawings,
        labels[is_digit],
        thresholds,
        (top[is_digit], (predicted == labels)[is_digit]),
    )
    if is_digit.any():
        result["confusion"] = confusion(labels[is_digit], predicted[is_digit])
    if (~is_digit).any():
        result["groups"] = _groups(names[~is_digit], rejected[~is_digit], scores, ~is_digit)
    seen = model.card.get("train_sources")
    if seen is not None and is_digit.any():
        unseen = ~np.isin(sources, seen) & is_digit
        result["unseen_sources"] = sorted(set(sources[unseen].tolist()))
        result["unseen_accuracy"] = _rate(correct[unseen])
        result["unseen_count"] = int(unseen.sum())
    return result


def _groups(
    names: npt.NDArray[Any], rejected: npt.NDArray[np.bool_], scores: Scores, rows: Any
) -> dict[str, Any]:
    """Rejection of letters and symbols by look-alike group (convert.labels), with the
    probability the model gives its top digit (times P(a digit))."""
    groups = np.array([group(str(n)) for n in names])
    digit_p = (scores.digits.max(axis=1) * (1 - scores.not_digit))[rows]
    return {
        g: {
            "count": int((groups == g).sum()),
            "rejected": _rate(rejected[groups == g]),
            "top_digit_p_mean": float(digit_p[groups == g].mean()) if (groups == g).any() else None,
            "top_digit_p_ge_0.9": _rate(digit_p[groups == g] >= 0.9),
        }
        for g in ("reject", "similar", "lookalike")
    }


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


def evaluate(
    model: Model,
    mnist_dir: Path | None,
    strokes: list[Path],
    thresholds: Thresholds | None = None,
) -> dict[str, Any]:
    """The whole report; thresholds default to the model card's."""
    t = thresholds or Thresholds.from_card(model.card)
    report: dict[str, Any] = {
        "model": str(model.path),
        "accelerator": model.accelerator,
        "thresholds": t.to_card(),
    }
    if mnist_dir is not None:
        mnist = evaluate_mnist(model, mnist_dir, t)
        report["mnist_accuracy"] = mnist["accuracy"]
        report["mnist"] = mnist
    report["strokes"] = {str(p): evaluate_strokes(model, p, t) for p in strokes}
    return report


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2%}"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def format_report(report: dict[str, Any]) -> str:
    """The human-readable form of `evaluate`'s report."""
    lines = [f"model {report['model']} on {report['accelerator']}"]
    if "mnist" in report:
        m = report["mnist"]
        lines.append(
            f"MNIST test: {m['accuracy']:.2%} of {m['count']}, {m['rejected']:.2%} rejected"
        )
        lines += _format_confusion(m["confusion"])
    for path, r in report["strokes"].items():
        ece_p = ", ".join(f"{k}: {_num(v)}" for k, v in r["ece_prefix"].items())
        lines.append(
            f"{path}: {r['count']} samples, accuracy {_pct(r['accuracy'])}, "
            f"rejected {_pct(r['rejected'])}, ECE {_num(r['ece'])} (prefixes {ece_p}; "
            f"live {_num(r.get('ece_live'))})"
        )
        if r.get("unseen_accuracy") is not None:
            lines.append(
                f"  unseen sources {', '.join(r['unseen_sources'])}: "
                f"{r['unseen_accuracy']:.2%} of {r['unseen_count']}"
            )
        for src, s in r["per_source"].items():
            lines.append(
                f"  {src}: accuracy {_pct(s['accuracy'])}, rejected {_pct(s['rejected'])} "
                f"of {s['count']}"
            )
        for g, s in r.get("groups", {}).items():
            lines.append(f"  {g}: rejected {_pct(s['rejected'])} of {s['count']}")
        if "confusion" in r:
            lines += _format_confusion(r["confusion"])
    return "\n".join(lines)


def _format_confusion(matrix: list[list[int]]) -> list[str]:
    head = "  true\\pred " + " ".join(f"{d:>5}" for d in range(10))
    rows = [f"  {t:>9} " + " ".join(f"{n:>5}" for n in row) for t, row in enumerate(matrix)]
    return [head, *rows]
