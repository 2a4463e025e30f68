"""python -m convert {all,train,quantize,evaluate,download}: build, check and ship the model."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from convert.data import MIRROR, MNIST_DIR, UNIPEN_FILE, download_mnist

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "models" / "digits.tflite"


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
    p.add_argument("--no-strokes", action="store_true", help="train on MNIST only")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument(
        "--limit", type=int, default=None, help="use only the first N images/samples (smoke tests)"
    )
    p.add_argument("--seed", type=int, default=None)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m convert", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    a = sub.add_parser("all", help="train, quantize to int8, evaluate and write the model card")
    _training(a)
    a.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="where the .tflite goes (card beside it)"
    )

    t = sub.add_parser("train", help="train and save a Keras model")
    _training(t)
    t.add_argument("--out", type=Path, required=True, help="output .keras file")

    q = sub.add_parser("quantize", help="int8-quantize a saved Keras model")
    _training(q)
    q.add_argument("--keras", type=Path, required=True)
    q.add_argument("--out", type=Path, default=DEFAULT_OUT)

    e = sub.add_parser("evaluate", help="accuracy on MNIST test and on strokes files")
    e.add_argument("--model", type=Path, default=DEFAULT_OUT)
    e.add_argument("--mnist", type=Path, default=MNIST_DIR)
    e.add_argument("--no-mnist", action="store_true")
    e.add_argument(
        "--strokes",
        type=Path,
        nargs="*",
        default=None,
        help=f"strokes files (default {UNIPEN_FILE})",
    )
    e.add_argument("--json", action="store_true", help="print one JSON object")

    c = sub.add_parser("card", help="regenerate models/README.md from a model card")
    c.add_argument("--model", type=Path, default=DEFAULT_OUT)

    d = sub.add_parser("download", help="fetch the MNIST files from a mirror and verify them")
    d.add_argument("--dest", type=Path, required=True)
    d.add_argument("--mirror", default=MIRROR, help="base URL (file:// works)")
    return ap


def _config(args: argparse.Namespace) -> Any:
    from convert.train import TrainConfig

    cfg = TrainConfig(
        mnist_dir=args.mnist, strokes=None if args.no_strokes else args.strokes, limit=args.limit
    )
    if args.epochs is not None:
        cfg.epochs = args.epochs
    if args.seed is not None:
        cfg.seed = args.seed
    return cfg


def _quantize_and_ship(
    model: Any, cfg: Any, out: Path, evaluate_strokes: bool = True
) -> dict[str, Any]:
    from convert.card import build_card, write_card
    from convert.quantize import to_float_tflite, to_int8_tflite
    from convert.train import representative_images

    out.parent.mkdir(parents=True, exist_ok=True)
    float_path = out.with_name(out.stem + "-float.tflite")
    float_path.write_bytes(to_float_tflite(model))
    out.write_bytes(to_int8_tflite(model, representative_images(cfg)))
    command = "python -m convert " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    card = build_card(model, cfg, out, float_path, command, evaluate_strokes)
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
        return _write_readme(args.model)
    cfg = _config(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from convert.train import train

    if args.command == "train":
        model = train(cfg)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        model.save(args.out)
        print(f"saved {args.out}")
        return 0
    if args.command == "quantize":
        import keras

        model = keras.models.load_model(args.keras)
    else:
        model = train(cfg)
    card = _quantize_and_ship(model, cfg, args.out)
    print(json.dumps(card["accuracy"], indent=2))
    print(f"wrote {args.out} ({card['size_bytes']} bytes) and its card")
    return 0


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
    strokes = [UNIPEN_FILE] if args.strokes is None else args.strokes
    report = evaluate(model, None if args.no_mnist else args.mnist, strokes)
    print(json.dumps(report) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
