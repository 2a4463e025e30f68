"""python -m convert {all,loso,fold,pretrain,train,quantize,evaluate,card,download}: build,
check and ship the model."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from convert.data import LETTERS_FILE, MIRROR, MNIST_DIR, UNIPEN_FILE, download_mnist

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "models" / "digits.tflite"
LOSO_SUMMARY = Path(__file__).resolve().parent.parent / "runs" / "loso" / "summary.json"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mnist", type=Path, default=MNIST_DIR, help="MNIST IDX directory (env DIGITS_MNIST_DIR)"
    )


def _training(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument(
        "--strokes",
        type=Path,
        default=UNIPEN_FILE,
        help="strokes file to train on (env DIGITS_UNIPEN_FILE)",
    )
    p.add_argument(
        "--letters",
        type=Path,
        default=LETTERS_FILE,
        help="letters and symbols to learn to reject (env DIGITS_LETTERS_FILE)",
    )
    p.add_argument("--no-strokes", action="store_true", help="train on MNIST only")
    p.add_argument(
        "--recipe",
        choices=("joint", "frozen"),
        default=None,
        help="joint (default, the shipped model): the whole network from scratch on MNIST and "
        "the drawings; frozen: an MNIST-only trunk, frozen, and a head on its features",
    )
    p.add_argument(
        "--pretrain-epochs", type=int, default=None, help="MNIST trunk epochs (frozen recipe)"
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="epochs of the network (joint) or the head"
    )
    p.add_argument(
        "--limit", type=int, default=None, help="use only the first N images/samples (smoke tests)"
    )
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--styles",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="redraw some 0s, 1s and 7s in the digit's other style (slashed 0, continental 1 "
        "and 7; default on, as the shipped model)",
    )
    p.add_argument("--cache", type=Path, default=None, help="trunk and feature cache directory")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m convert", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    a = sub.add_parser("all", help="train, quantize to int8, evaluate and write the model card")
    _training(a)
    a.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="where the .tflite goes (card beside it)"
    )

    lo = sub.add_parser(
        "loso", help="leave-one-source-out: one fold per UNIPEN source, each its own process"
    )
    _training(lo)
    lo.add_argument("--out", type=Path, default=None, help="fold results (default runs/loso)")
    lo.add_argument("--lock", type=Path, default=None, help="run each fold under flock FILE")
    lo.add_argument(
        "--holdouts", nargs="+", default=None, help="only these folds (default: every source)"
    )
    lo.add_argument(
        "--remeasure",
        action="store_true",
        help="train nothing: measure the folds already in --out again at the card thresholds "
        "of convert/ship.py",
    )

    f = sub.add_parser("fold", help="one leave-one-source-out fold")
    _training(f)
    f.add_argument("holdout", help="the UNIPEN source left out and measured")
    f.add_argument("--out", type=Path, required=True)

    pt = sub.add_parser("pretrain", help="train (or find cached) the MNIST trunk")
    _training(pt)

    t = sub.add_parser("train", help="train and save a Keras model")
    _training(t)
    t.add_argument("--out", type=Path, required=True, help="output .keras file")

    q = sub.add_parser("quantize", help="int8-quantize a saved Keras model")
    _training(q)
    q.add_argument("--keras", type=Path, required=True)
    q.add_argument("--out", type=Path, default=DEFAULT_OUT)

    e = sub.add_parser("evaluate", help="accuracy on MNIST test and on strokes files")
    e.add_argument("--model", type=Path, default=DEFAULT_OUT)
    e.add_argument("--mnist", type=Path, default=MNIST_DIR, help="env DIGITS_MNIST_DIR")
    e.add_argument("--no-mnist", action="store_true")
    e.add_argument(
        "--strokes",
        type=Path,
        nargs="*",
        default=None,
        help=f"strokes files (default {UNIPEN_FILE})",
    )
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--reject-at", type=float, default=None, help="default: the model card's")
    e.add_argument("--unsure-below", type=float, default=None, help="default: the model card's")

    c = sub.add_parser("card", help="regenerate models/README.md from a model card")
    c.add_argument("--model", type=Path, default=DEFAULT_OUT)
    c.add_argument(
        "--loso",
        type=Path,
        default=None,
        help="first put this `convert loso` summary.json into the card (the model is unchanged)",
    )
    c.add_argument(
        "--remeasure",
        action="store_true",
        help="first give the card the thresholds of convert/ship.py and measure the int8 "
        "model's figures again at them (the model is unchanged)",
    )
    _common(c)
    c.add_argument("--strokes", type=Path, default=UNIPEN_FILE, help="(with --remeasure)")
    c.add_argument("--letters", type=Path, default=LETTERS_FILE, help="(with --remeasure)")

    d = sub.add_parser("download", help="fetch the MNIST files from a mirror and verify them")
    d.add_argument("--dest", type=Path, required=True)
    d.add_argument("--mirror", default=MIRROR, help="base URL (file:// works)")
    return ap


def _config(args: argparse.Namespace) -> Any:
    from convert.train import TrainConfig

    cfg = TrainConfig(
        mnist_dir=args.mnist,
        strokes=None if args.no_strokes else args.strokes,
        letters=None if args.no_strokes else args.letters,
        limit=args.limit,
    )
    if args.styles is not None:
        cfg.styles = args.styles
    for name, value in (
        ("recipe", args.recipe),
        ("pretrain_epochs", args.pretrain_epochs),
        ("seed", args.seed),
        ("cache_dir", args.cache),
    ):
        if value is not None:
            setattr(cfg, name, value)
    if args.epochs is not None:
        setattr(cfg, "joint_epochs" if cfg.recipe == "joint" else "head_epochs", args.epochs)
    return cfg


def _fold_args(args: argparse.Namespace) -> list[str]:
    """The training flags given to `loso`, passed on to each `fold`."""
    out = ["--mnist", str(args.mnist), "--strokes", str(args.strokes)]
    out += ["--letters", str(args.letters)]
    for flag, value in (
        ("--recipe", args.recipe),
        ("--epochs", args.epochs),
        ("--pretrain-epochs", args.pretrain_epochs),
        ("--limit", args.limit),
        ("--seed", args.seed),
        ("--cache", args.cache),
    ):
        if value is not None:
            out += [flag, str(value)]
    return out + ([] if args.styles is None else ["--styles" if args.styles else "--no-styles"])


def _ship(model: Any, rows: Any, cfg: Any, out: Path) -> dict[str, Any]:
    from convert.card import build_card, write_card
    from convert.quantize import to_float_tflite
    from convert.ship import quantize_and_calibrate

    quantize_and_calibrate(model, rows, cfg, out)
    float_path = out.with_name(out.stem + "-float.tflite")
    float_path.write_bytes(to_float_tflite(model))
    command = "python -m convert " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    loso_file = LOSO_SUMMARY if out.resolve() == DEFAULT_OUT else None
    loso = json.loads(loso_file.read_text()) if loso_file and loso_file.exists() else None
    card = build_card(model, cfg, out, float_path, command, True, loso)
    write_card(out, card)
    float_path.unlink()
    if out.resolve() == DEFAULT_OUT:
        _write_readme(out)
    return card


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "download":
        print(download_mnist(args.dest, args.mirror))
        return 0
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "card":
        if args.remeasure:
            from convert.card import remeasure_int8

            remeasure_int8(args.model, args.mnist, [args.strokes, args.letters])
        if args.loso is not None:
            _merge_loso(args.model, args.loso)
        return _write_readme(args.model)
    cfg = _config(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from convert import loso
    from convert.train import pretrain_trunk, train

    if args.command == "pretrain":
        pretrain_trunk(cfg)
        return 0
    if args.command == "loso":
        holdouts = None if args.holdouts is None else tuple(args.holdouts)
        if args.remeasure:
            summary = loso.remeasure(cfg, args.out or loso.RUNS)
        else:
            summary = loso.run_all(
                cfg, args.out or loso.RUNS, args.lock, _fold_args(args), holdouts
            )
        print(json.dumps(summary, indent=1))
        return 0
    if args.command == "fold":
        result = loso.run_fold(cfg, args.holdout, args.out)
        print(json.dumps({k: v for k, v in result.items() if k in ("holdout", "mnist")}))
        return 0
    if args.command == "train":
        model, _ = train(cfg)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        model.save(args.out)
        print(f"saved {args.out}")
        return 0
    if args.command == "quantize":
        import keras

        from convert.trainset import rendered

        model = keras.models.load_model(args.keras)
        rows = rendered(cfg)
    else:
        model, rows = train(cfg)
    card = _ship(model, rows, cfg, args.out)
    print(json.dumps(card["accuracy"]["int8"], indent=1))
    print(f"wrote {args.out} ({card['size_bytes']} bytes) and its card")
    return 0


def _merge_loso(model: Path, summary: Path) -> None:
    from convert.card import COMMANDS, write_card
    from server.model import read_card

    card = read_card(model)
    card["loso"] = json.loads(summary.read_text())
    card["commands"] = COMMANDS
    write_card(model, card)


def _write_readme(model: Path) -> int:
    from convert.card import render_readme
    from server.model import read_card

    readme = model.with_name("README.md")
    readme.write_text(render_readme(read_card(model)))
    print(f"wrote {readme}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from convert.evaluate import evaluate, format_report
    from server.model import ModelError, load_model

    try:
        model = load_model(args.model, "cpu")
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from server.verdict import Thresholds

    strokes = [UNIPEN_FILE] if args.strokes is None else args.strokes
    try:
        thresholds = Thresholds.from_card(model.card, args.reject_at, args.unsure_below)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = evaluate(model, None if args.no_mnist else args.mnist, strokes, thresholds)
    print(json.dumps(report) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
