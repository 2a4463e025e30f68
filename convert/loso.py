"""Leave-one-source-out: for each UNIPEN source, train without it (the shipped recipe: same
MNIST trunk, head, calibration and thresholds), then measure the held-out source's digits and
letters. Each fold runs as its own process, optionally under a lock file, so other heavy jobs
on a shared machine can run between folds.

Belongs here: running the folds, one fold's measurements, and the table across folds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from convert.data import load_strokes
from convert.evaluate import evaluate_mnist, evaluate_samples
from convert.train import TrainConfig, sources_of
from server.model import load_model
from server.verdict import Thresholds

RUNS = Path(__file__).resolve().parent.parent / "runs" / "loso"
#: Folds with fewer held-out digits than this are listed but left out of "worst source".
SMALL = 100


def run_fold(cfg: TrainConfig, holdout: str, out_dir: Path) -> dict[str, Any]:
    """Train without `holdout`, quantize and calibrate, and measure `holdout`."""
    from convert.ship import quantize_and_calibrate
    from convert.train import train

    sources = tuple(s for s in sources_of(cfg) if s != holdout)
    cfg.train_sources = sources
    model, rows = train(cfg)
    path = out_dir / f"model-{holdout}.tflite"  # its card is model-{holdout}.json
    card = quantize_and_calibrate(model, rows, cfg, path)
    about = {
        "holdout": holdout,
        "train_sources": list(sources),
        "recipe": cfg.recipe,
        "epochs": cfg.joint_epochs if cfg.recipe == "joint" else cfg.head_epochs,
        "temperature": card["temperature"],
    }
    return measure_fold(cfg, path, about)


def measure_fold(cfg: TrainConfig, path: Path, about: dict[str, Any]) -> dict[str, Any]:
    """Measure a fold's model at its card's thresholds on MNIST and the held-out source
    (`about["holdout"]`); write and return `fold-<source>.json` beside the model."""
    served = load_model(path, "cpu")
    t = Thresholds.from_card(served.card)
    holdout = about["holdout"]
    result: dict[str, Any] = {
        **about,
        "verdict": t.to_card(),
        "mnist": {
            k: v for k, v in evaluate_mnist(served, cfg.mnist_dir, t).items() if k != "confusion"
        },
    }
    for key, path_ in (("digits", cfg.strokes), ("letters", cfg.letters)):
        if path_ is not None:
            held = [s for s in load_strokes(path_) if s.source == holdout]
            result[key] = evaluate_samples(served, held, t)
    (path.parent / f"fold-{holdout}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def remeasure(cfg: TrainConfig, out_dir: Path) -> dict[str, Any]:
    """Re-measure the folds already trained in `out_dir` at today's card thresholds
    (`convert.ship.THRESHOLDS`), without training: the thresholds change no weight. Each
    fold's card gets the new thresholds; returns the new table."""
    from convert.card import write_card
    from convert.ship import THRESHOLDS
    from server.model import read_card

    folds = []
    for path in sorted(out_dir.glob("model-*.tflite")):
        card = read_card(path)
        card["verdict"] = THRESHOLDS.to_card()
        write_card(path, card)
        old_file = out_dir / f"fold-{path.stem.removeprefix('model-')}.json"
        old = json.loads(old_file.read_text())
        about = {k: old[k] for k in ("holdout", "train_sources", "recipe", "epochs", "temperature")}
        print(f"fold {about['holdout']}: measuring at {card['verdict']}", flush=True)
        folds.append(measure_fold(cfg, path, about))
    summary = table(folds)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def run_all(
    cfg: TrainConfig,
    out_dir: Path,
    lock: Path | None,
    fold_args: list[str],
    holdouts: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Every fold (or those of `holdouts`) in its own process, skipping folds already
    measured in `out_dir`, then the table of the folds measured."""
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = sources_of(cfg) if holdouts is None else holdouts
    for source in wanted:
        if (out_dir / f"fold-{source}.json").exists():
            print(f"fold {source}: already measured", flush=True)
            continue
        cmd = [sys.executable, "-m", "convert", "fold", source, "--out", str(out_dir), *fold_args]
        if lock is not None:
            flock = shutil.which("flock")
            if flock is None:
                raise RuntimeError("--lock needs the flock command")
            cmd = [flock, str(lock), *cmd]
        print(f"fold {source}: {' '.join(cmd)}", flush=True)
        subprocess.run(cmd, check=True)
    folds = [json.loads((out_dir / f"fold-{s}.json").read_text()) for s in wanted]
    summary = table(folds)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _row(fold: dict[str, Any]) -> dict[str, Any]:
    d = fold.get("digits", {})
    letters = fold.get("letters", {}).get("groups", {})
    return {
        "digits": d.get("count", 0),
        "accuracy": d.get("accuracy"),
        "digits_rejected": d.get("rejected"),
        "ece": d.get("ece"),
        "ece_prefix": d.get("ece_prefix"),
        "mnist": fold["mnist"]["accuracy"],
        "mnist_rejected": fold["mnist"]["rejected"],
        "epochs": fold.get("epochs"),
        "letters": {
            g: {"count": v["count"], "rejected": v["rejected"]} for g, v in letters.items()
        },
    }


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def _pooled(rows: dict[str, dict[str, Any]], key: str, weight: str = "digits") -> float | None:
    pairs = [(r[key], r[weight]) for r in rows.values() if r[key] is not None and r[weight]]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total else None


def table(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per held-out source, and the mean over sources and pooled over digits."""
    rows = {f["holdout"]: _row(f) for f in folds}
    big = {s: r for s, r in rows.items() if r["digits"] >= SMALL and r["accuracy"] is not None}
    worst = min(big, key=lambda s: big[s]["accuracy"]) if big else None
    fractions = ("0.25", "0.5", "0.75")
    letters: dict[str, Any] = {}
    for g in ("reject", "similar", "lookalike"):
        n = sum(r["letters"].get(g, {}).get("count", 0) for r in rows.values())
        hit = sum(
            (r["letters"][g]["rejected"] or 0) * r["letters"][g]["count"]
            for r in rows.values()
            if g in r["letters"]
        )
        letters[g] = {"count": n, "rejected": hit / n if n else None}
    return {
        "recipe": folds[0].get("recipe", "frozen") if folds else None,
        "verdict": folds[0].get("verdict") if folds else None,
        "per_source": rows,
        "mean_per_source": {
            "accuracy": _mean([r["accuracy"] for r in rows.values()]),
            "ece": _mean([r["ece"] for r in rows.values()]),
        },
        "mean_per_source_with_100_or_more_digits": {
            "accuracy": _mean([r["accuracy"] for r in big.values()]),
        },
        "pooled": {
            "digits": sum(r["digits"] for r in rows.values()),
            "accuracy": _pooled(rows, "accuracy"),
            "digits_rejected": _pooled(rows, "digits_rejected"),
            "note": "accuracy and rejection pooled over every held-out digit; ece and "
            "ece_prefix are the per-source ECEs weighted by digit count",
            "ece": _pooled(rows, "ece"),
            "ece_prefix": {
                f: _mean_weighted([(r["ece_prefix"][f], r["digits"]) for r in rows.values()])
                for f in fractions
            },
        },
        "worst_source": None if worst is None else {"source": worst, **big[worst]},
        "small_sources": sorted(s for s, r in rows.items() if r["digits"] < SMALL),
        "letters_pooled": letters,
    }


def _mean_weighted(pairs: list[tuple[float | None, int]]) -> float | None:
    kept = [(v, w) for v, w in pairs if v is not None and w]
    total = sum(w for _, w in kept)
    return sum(v * w for v, w in kept) / total if total else None
