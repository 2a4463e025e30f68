"""The model card: what `server.model` checks at start-up and what people read.

Belongs here: measuring the float and int8 models and writing `<model>.json`; the README
beside the model (models/README.md) is written by hand from it.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from convert.data import MNIST_SHA256, file_sha256
from convert.evaluate import evaluate, single_inference_us
from convert.quantize import tensor_specs
from server.model import card_path, load_model
from server.raster import MNIST_PEN, RASTER_VERSION


def write_card(model_path: Path, card: dict[str, Any]) -> None:
    card_path(model_path).write_text(json.dumps(card, indent=2) + "\n")


def _base_card(model: Any, cfg: Any, path: Path) -> dict[str, Any]:
    return {
        "name": path.stem,
        "architecture": _architecture(model),
        "parameters": int(model.count_params()),
        "size_bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        **tensor_specs(path.read_bytes()),
        "raster_version": RASTER_VERSION,
        "pen": {"radius": MNIST_PEN.radius, "soft": MNIST_PEN.soft},
        "train_sources": list(cfg.train_sources) if cfg.strokes is not None else [],
    }


def _architecture(model: Any) -> list[str]:
    rows = []
    for layer in model.layers:
        shape = tuple(layer.output.shape[1:]) if hasattr(layer, "output") else ()
        rows.append(f"{layer.__class__.__name__} {shape}")
    return rows


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"mnist_test": report.get("mnist_accuracy")}
    for path, r in report["strokes"].items():
        out[Path(path).name] = {
            "all_sources": r["accuracy"],
            "unseen_sources": r.get("unseen_accuracy"),
            "unseen_source_names": r.get("unseen_sources"),
            "per_source": {k: v["accuracy"] for k, v in r["per_source"].items()},
        }
    return out


def build_card(
    model: Any, cfg: Any, int8_path: Path, float_path: Path, command: str, with_strokes: bool = True
) -> dict[str, Any]:
    """Measure both models through `server.model` and return the int8 model's card."""
    import tensorflow as tf

    write_card(float_path, _base_card(model, cfg, float_path))
    card = _base_card(model, cfg, int8_path)
    write_card(int8_path, card)
    strokes = [cfg.strokes] if (with_strokes and cfg.strokes is not None) else []
    float_model = load_model(float_path, "cpu")
    int8_model = load_model(int8_path, "cpu")
    accuracy = {
        "float": _summary(evaluate(float_model, cfg.mnist_dir, strokes)),
        "int8": _summary(evaluate(int8_model, cfg.mnist_dir, strokes)),
    }
    card_path(float_path).unlink()
    data = {f"mnist/{name}": sha for name, sha in MNIST_SHA256.items()}
    if cfg.strokes is not None:
        data[f"strokes/{Path(cfg.strokes).name}"] = file_sha256(Path(cfg.strokes))
    card.update(
        accuracy=accuracy,
        float_size_bytes=float_path.stat().st_size,
        inference_us_median_1thread=round(single_inference_us(int8_model), 1),
        inference_machine=platform.processor() or platform.machine(),
        training={
            "command": command,
            "seed": cfg.seed,
            "epochs": cfg.epochs,
            "stroke_copies": cfg.stroke_copies,
            "limit": cfg.limit,
            "tensorflow": tf.__version__,
        },
        data_sha256=data,
    )
    return card


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def render_readme(card: dict[str, Any]) -> str:
    """models/README.md: the card in prose and tables, regenerated with every model."""
    acc = card["accuracy"]
    strokes = next(k for k in acc["int8"] if k != "mnist_test")
    f, q = acc["float"][strokes], acc["int8"][strokes]
    unseen = ", ".join(q["unseen_source_names"] or [])
    seen = set(card["train_sources"])
    rows = "\n".join(
        f"| {src} | {'yes' if src in seen else 'no'} | {_pct(f['per_source'][src])} "
        f"| {_pct(q['per_source'][src])} |"
        for src in q["per_source"]
    )
    data = "\n".join(f"| {name} | `{sha}` |" for name, sha in card["data_sha256"].items())
    layers = "\n".join(f"    {row}" for row in card["architecture"])
    return f"""# {card["name"]}.tflite

Full-integer int8 CNN for single handwritten digits, served by `server/`; the server checks
the file against its card [`{card["name"]}.json`]({card["name"]}.json) at start-up. This page
is generated from the card by `python -m convert card`.

| | |
|---|---|
| size | {card["size_bytes"]:,} bytes (float32 model: {card["float_size_bytes"]:,} bytes) |
| parameters | {card["parameters"]:,} |
| input | `{card["input"]["dtype"]}` {card["input"]["shape"]}, scale {card["input"]["scale"]:.6g}, \
zero point {card["input"]["zero_point"]} (0..255, 255 = ink) |
| output | `{card["output"]["dtype"]}` {card["output"]["shape"]} logits, scale \
{card["output"]["scale"]:.6g}, zero point {card["output"]["zero_point"]}; softmax in \
`server/model.py` |
| preprocessing | `server/raster.py` version {card["raster_version"]}, pen radius \
{card["pen"]["radius"]} px, soft edge {card["pen"]["soft"]} px |
| single-image inference | {card["inference_us_median_1thread"]} us median, one CPU thread \
({card["inference_machine"]}) |
| sha256 | `{card["sha256"]}` |

## Accuracy

| data | float32 | int8 |
|---|---:|---:|
| MNIST test (10,000) | {_pct(acc["float"]["mnist_test"])} | {_pct(acc["int8"]["mnist_test"])} |
| {strokes}, all sources | {_pct(f["all_sources"])} | {_pct(q["all_sources"])} |
| {strokes}, sources unseen in training ({unseen}) | {_pct(f["unseen_sources"])} \
| {_pct(q["unseen_sources"])} |

Per UNIPEN source (trained on: {", ".join(card["train_sources"]) or "none"}):

| source | in training | float32 | int8 |
|---|---|---:|---:|
{rows}

Accuracies on sources used in training say little; the unseen sources are the honest
figure for pen input from other writers and devices.

## Architecture

{layers}

## Training

Keras on the CPU, seed {card["training"]["seed"]}, {card["training"]["epochs"]} epochs,
TensorFlow {card["training"]["tensorflow"]}: MNIST train (60,000 scans with random slant,
rotation, zoom, shift and pen width) plus {card["training"]["stroke_copies"]} drawings of
each UNIPEN sample from the training sources, rendered by `server/raster.py` with random
slant, rotation, aspect, pen width and jitter. Post-training full-integer quantization with
1,000 calibration images from the same mix. Command:

    {card["training"]["command"]}

## Data (SHA-256 of the uncompressed MNIST files and of the strokes file)

| file | sha256 |
|---|---|
{data}
"""
