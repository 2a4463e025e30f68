"""The model card: what `server.model` checks at start-up and what people read.

Belongs here: measuring the float and int8 models and writing `<model>.json`, and rendering
the README beside the model (models/README.md) from it.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from convert.data import MNIST_SHA256, file_sha256
from convert.evaluate import evaluate, single_inference_us
from convert.labels import card_entry
from convert.quantize import tensor_specs
from convert.trainset import (
    DIGIT_COPIES,
    LETTER_COPIES,
    PREFIX_COPIES,
    SCRIBBLES,
    STYLE_SHARE,
)
from server.model import card_path, load_model
from server.raster import MNIST_PEN, RASTER_VERSION


def write_card(model_path: Path, card: dict[str, Any]) -> None:
    card_path(model_path).write_text(json.dumps(card, indent=2) + "\n")


def base_card(model: Any, cfg: Any, path: Path) -> dict[str, Any]:
    """What the server checks at start-up: the file, its tensors, its classes."""
    from convert.train import sources_of

    return {
        "name": path.stem,
        "architecture": _architecture(model),
        "parameters": int(model.count_params()),
        "size_bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        **tensor_specs(path.read_bytes()),
        "classes": [str(d) for d in range(10)] + ["not_digit"],
        "raster_version": RASTER_VERSION,
        "pen": {"radius": MNIST_PEN.radius, "soft": MNIST_PEN.soft},
        "train_sources": list(sources_of(cfg)) if cfg.strokes is not None else [],
    }


def _architecture(model: Any) -> list[str]:
    rows = []
    for layer in _flat_layers(model):
        shape = tuple(layer.output.shape[1:]) if hasattr(layer, "output") else ()
        rows.append(f"{layer.__class__.__name__} {shape}")
    return rows


def _flat_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers"):  # trunk and head are models of their own
            out += [sub for sub in layer.layers if sub.__class__.__name__ != "InputLayer"]
        else:
            out.append(layer)
    return out


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "mnist_test": report.get("mnist_accuracy"),
        "mnist_rejected": report.get("mnist", {}).get("rejected"),
    }
    for path, r in report["strokes"].items():
        entry = {
            "all_sources": r["accuracy"],
            "rejected": r["rejected"],
            "ece": r["ece"],
            "ece_prefix": r["ece_prefix"],
            "ece_live": r.get("ece_live"),
            "unseen_sources": r.get("unseen_accuracy"),
            "unseen_source_names": r.get("unseen_sources"),
            "per_source": {k: v["accuracy"] for k, v in r["per_source"].items()},
        }
        if "groups" in r:
            entry["groups"] = r["groups"]
        out[Path(path).name] = entry
    return out


def build_card(
    model: Any,
    cfg: Any,
    int8_path: Path,
    float_path: Path,
    command: str,
    with_strokes: bool = True,
    loso: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure both models through `server.model` and complete the int8 model's card
    (written by `convert.ship` with its temperature)."""
    import tensorflow as tf

    from server.model import read_card

    card = read_card(int8_path)
    write_card(
        float_path, {**base_card(model, cfg, float_path), "temperature": card["temperature"]}
    )
    digits = [cfg.strokes] if (with_strokes and cfg.strokes is not None) else []
    # A smoke-test model (--limit) is not measured on the 16,515 letters: that takes minutes.
    full = with_strokes and cfg.letters is not None and cfg.limit is None
    letters = [cfg.letters] if full else []
    float_model = load_model(float_path, "cpu")
    int8_model = load_model(int8_path, "cpu")
    accuracy = {
        "float": _summary(evaluate(float_model, cfg.mnist_dir, digits)),
        "int8": _summary(evaluate(int8_model, cfg.mnist_dir, digits + letters)),
    }
    card_path(float_path).unlink()
    data = {f"mnist/{name}": sha for name, sha in MNIST_SHA256.items()}
    for path in (cfg.strokes, cfg.letters):
        if path is not None:
            data[f"strokes/{Path(path).name}"] = file_sha256(Path(path))
    card.update(
        rejects=card_entry(),
        accuracy=accuracy,
        loso=loso,
        float_size_bytes=float_path.stat().st_size,
        inference_us_median_1thread=round(single_inference_us(int8_model), 1),
        inference_machine=platform.processor() or platform.machine(),
        training={
            "command": command,
            "seed": cfg.seed,
            "recipe": cfg.recipe,
            **(
                {"epochs": cfg.joint_epochs}
                if cfg.recipe == "joint"
                else {"pretrain_epochs": cfg.pretrain_epochs, "head_epochs": cfg.head_epochs}
            ),
            "digit_copies": DIGIT_COPIES,
            "prefix_copies": PREFIX_COPIES,
            "letter_copies": LETTER_COPIES,
            "scribbles": SCRIBBLES,
            "styles": cfg.styles,
            "style_share": STYLE_SHARE if cfg.styles else 0.0,
            "limit": cfg.limit,
            "tensorflow": tf.__version__,
        },
        commands=COMMANDS,
        data_sha256=data,
    )
    return card


def remeasure_int8(model_path: Path, mnist_dir: Path, strokes: list[Path]) -> None:
    """Give the card the thresholds of `convert.ship.THRESHOLDS` and measure the int8 model
    again at them. The float32 model is not kept after training, so its figures stay
    at the thresholds they were measured at (recorded as `accuracy.float_verdict`)."""
    from convert.ship import THRESHOLDS
    from server.model import read_card

    card = read_card(model_path)
    card["accuracy"].setdefault("float_verdict", card.get("verdict"))
    card["verdict"] = THRESHOLDS.to_card()
    write_card(model_path, card)
    card["accuracy"]["int8"] = _summary(evaluate(load_model(model_path, "cpu"), mnist_dir, strokes))
    write_card(model_path, card)


def loso_command(epochs: int) -> str:
    return (
        f"python -m convert loso --epochs {epochs}; "
        "python -m convert card --loso runs/loso/summary.json"
    )


#: Epochs of the leave-one-source-out folds in the card's table (fewer than the shipped
#: model's, to fit the folds on two shared cores).
LOSO_EPOCHS = 6
#: How each figure in the card is measured (run from the repository root).
COMMANDS = {
    "train": "python -m convert all",
    "loso": loso_command(LOSO_EPOCHS),
    "evaluate": "python -m convert evaluate --strokes ../shared/data/unipen/unipen1a-dev.jsonl.gz "
    "../shared/data/unipen/unipen1bcd-dev.jsonl.gz --json",
    "speed": "python bench/model.py",
}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _eces(figures: dict[str, Any]) -> str:
    """ECE of complete drawings, then of their 25/50/75% prefixes."""
    prefix = figures.get("ece_prefix") or {}
    parts = " / ".join(_num(prefix.get(k)) for k in ("0.25", "0.5", "0.75"))
    return f"{_num(figures.get('ece'))}; {parts}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _fold_epochs(loso: dict[str, Any], default: int) -> tuple[int, str]:
    """The folds' epochs (as recorded by each fold, else `default`), and how to say it."""
    per = {src: r.get("epochs") or default for src, r in loso["per_source"].items()}
    if len(set(per.values())) <= 1:
        n = next(iter(per.values()), default)
        return n, str(n)
    said = ", ".join(f"{n} ({src})" for src, n in per.items())
    return min(per.values()), said


def _loso_intro(loso: dict[str, Any], training: dict[str, Any]) -> str:
    """What each fold trained, and how that differs from the shipped model."""
    if training.get("recipe", "frozen") == "joint":
        fold_epochs, said = _fold_epochs(loso, LOSO_EPOCHS)
        return f"""Each fold trains the shipped recipe (the whole network from scratch on MNIST and
the drawings of the fold's training sources, int8 quantization, temperature fitted on the
fold's own training sources, the same thresholds) without one UNIPEN source, then measures that
source's digits (complete, and at 25/50/75% of their points) and its letters and symbols.
**One difference**: to fit the folds on two shared cores they trained for {said} epochs,
the shipped model for {training.get("epochs")} (same schedule, shorter).
Command: `{loso_command(fold_epochs)}`."""
    fold_epochs, _ = _fold_epochs(loso, 4)
    head_epochs = training.get("head_epochs", 0)
    return f"""Each fold trains the shipped recipe (the same MNIST trunk, a new head, int8
quantization, temperature fitted on the fold's own training sources, the same thresholds)
without one UNIPEN source, then measures that source's digits (complete, and at 25/50/75% of
their points) and its letters and symbols. **One difference**: to fit eight folds on two
shared cores the folds trained the head for {fold_epochs} epochs, the shipped model for \
{head_epochs}. When this recipe was chosen, a {fold_epochs}-epoch head trained on all \
sources measured worse than the shipped one on MNIST, the dev digits and the letters, so this \
table is probably slightly pessimistic for the shipped model.
Command: `{loso_command(fold_epochs)}`."""


def _loso_section(loso: dict[str, Any] | None, training: dict[str, Any], sources: list[str]) -> str:
    if not loso:
        return (
            "Not measured for this model: run `python -m convert loso` before "
            "`python -m convert all` to include the table.\n"
        )
    rows = []
    for src, r in loso["per_source"].items():
        e = r["ece_prefix"] or {}
        lg = r["letters"]
        rows.append(
            f"| {src} | {r['digits']} | {_pct(r['accuracy'])} | {_pct(r['digits_rejected'])} "
            f"| {_num(r['ece'])} | {_num(e.get('0.25'))} | {_num(e.get('0.5'))} "
            f"| {_num(e.get('0.75'))} | {_pct(lg.get('reject', {}).get('rejected'))} "
            f"({lg.get('reject', {}).get('count', 0)}) | {_pct(r['mnist'])} |"
        )
    missing = sorted(set(sources) - set(loso["per_source"]))
    if missing:
        rows.append(f"| {', '.join(missing)} | not measured: the folds were not run |" + " |" * 8)
    pooled, worst = loso["pooled"], loso["worst_source"] or {}
    pe = pooled["ece_prefix"]
    letters = loso["letters_pooled"]
    group_rows = "\n".join(
        f"| {g} | {v['count']} | {_pct(v['rejected'])} |" for g, v in letters.items()
    )
    # Folds from before thresholds were recorded were measured at the default of the time.
    verdict = loso.get("verdict") or {"reject_at": 0.5, "unsure_below": 0.6}
    return f"""{_loso_intro(loso, training)}
Thresholds of this table: not_digit at P(not a digit) >= {verdict["reject_at"]}, unsure below \
{verdict["unsure_below"]}; folds trained at an earlier default are measured again at these by \
`python -m convert loso --remeasure --out <folds>` (thresholds change no weight).

| held-out source | digits | accuracy | digits rejected | ECE | ECE 25% | ECE 50% | ECE 75% \
| must-reject letters rejected (n) | MNIST test |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

* Mean over the {len(loso["per_source"])} sources: {_pct(loso["mean_per_source"]["accuracy"])};
  over sources with at least 100 digits: \
{_pct(loso["mean_per_source_with_100_or_more_digits"]["accuracy"])}.
* Pooled over all {pooled["digits"]} held-out digits: {_pct(pooled["accuracy"])} correct,
  {_pct(pooled["digits_rejected"])} rejected; ECE (per-source, weighted by digits)
  {_num(pooled["ece"])} complete, {_num(pe["0.25"])} / {_num(pe["0.5"])} / {_num(pe["0.75"])}
  at 25/50/75% of the points.
* Worst source with at least 100 digits: {worst.get("source", "n/a")} \
({_pct(worst.get("accuracy"))}). Too small to mean much: \
{", ".join(loso["small_sources"]) or "none"} (a single error moves them by 6-15 points).

Letters and symbols of the held-out sources, pooled over the folds:

| group | samples | rejected |
|---|---:|---:|
{group_rows}
"""


def _prefix_training(t: dict[str, Any]) -> str:
    if t.get("recipe", "frozen") == "joint":
        return """The live guess is made on partial ink, so the network is trained on partial \
drawings (the first 15-95% of a digit's points, or of its ink length, labelled with the digit:
cross-entropy then learns how likely each digit is from a prefix) as well as complete ones."""
    return """The live guess is made on partial ink, so the head is trained on partial drawings \
(the first
15-95% of a digit's points, labelled with the digit: cross-entropy then learns how likely each
digit is from a prefix) as well as complete ones."""


def _styles_said(t: dict[str, Any]) -> str:
    if not t.get("styles"):
        return ""
    share = t.get("style_share", 0)
    return (
        f"; {share:.0%} of the redrawn 0s, 1s and 7s in the digit's other style: a slash "
        "through the 0, a continental 1 with a long flag, a 7 with a bar across its stem"
    )


def _drawings(t: dict[str, Any]) -> str:
    return f"""{t.get("digit_copies")} drawings of each UNIPEN digit of the training sources (the \
first as drawn, the rest with random slant, rotation, aspect, per-stroke offsets and turns, \
elastic bends, split and dropped strokes, pen width and jitter{_styles_said(t)}), \
{t.get("prefix_copies")} distorted partial drawings of each, {t.get("letter_copies")} drawings \
of each must-reject letter or symbol, and {t.get("scribbles")} synthetic scribbles, all \
rendered by `server/raster.py`. The shipped model uses every source; each fold leaves one out."""


def _training_section(t: dict[str, Any]) -> str:
    """How the model was trained, for the card's Training section."""
    head = f"Keras on the CPU, seed {t.get('seed')}, TensorFlow {t.get('tensorflow')}"
    if t.get("recipe", "frozen") == "joint":
        return f"""{head}, in one stage: the
whole network (five conv blocks, two dense layers, 11 classes) from scratch, {t.get("epochs")} \
epochs (Adam, cosine-decayed learning rate, batch 128) on MNIST train (half of the scans \
warped at random each time: slant, rotation, zoom, shift; some with a thicker or thinner pen) \
and {_drawings(t)}

Post-training full-integer quantization with 1,000 calibration images from the training mix,
then the temperature. One command reproduces the model and this card's figures for it (the
rendered rows are cached in `runs/cache/`; given `--out` elsewhere than `models/`, it writes
the model and its card there, without this README: `python -m convert card --model <out>`
makes it). The leave-one-source-out table comes from its own command (above); a comparison
with the model before, when there is one, is written by hand. Command:"""
    return f"""{head}, in two stages:

1. **Trunk** (four conv blocks, 28x28 -> 7x7x64): trained for {t.get("pretrain_epochs")} epochs \
on MNIST train alone (random slant, rotation, zoom, shift and pen width) with a 10-digit head, \
then frozen. No UNIPEN ink reaches it, so every leave-one-source-out fold shares it honestly.
2. **Head** (one conv block, two dense layers, 11 classes): {t.get("head_epochs")} epochs on \
the trunk's features of MNIST train, {_drawings(t)}

Post-training full-integer quantization with 1,000 calibration images from the training mix,
then the temperature. Command (one command reproduces the model; the MNIST trunk and the
rendered rows are cached in `runs/cache/`):"""


def _float_note(acc: dict[str, Any], verdict: dict[str, Any]) -> str:
    """Say so when the float32 column was measured at other thresholds than the int8 one."""
    was = acc.get("float_verdict")
    if not was or was == verdict:
        return ""
    return (
        f"\nThe float32 column was measured at the thresholds of its training run (reject_at "
        f"{was.get('reject_at')}); the float32 model is not kept, so it was not measured again "
        f"when the int8 model's were (`python -m convert card --remeasure`)."
    )


def render_readme(card: dict[str, Any]) -> str:
    """models/README.md: the card in prose and tables, regenerated with every model."""
    from convert.ship import THRESHOLDS_WHY  # convert.ship writes cards: imports this module

    acc = card["accuracy"]
    files = [k for k in acc["int8"] if isinstance(acc["int8"][k], dict)]
    # The digits file: the one both models were measured on, when there is one.
    strokes = next((k for k in files if k in acc["float"]), files[0])
    f, q = acc["float"].get(strokes, {}), acc["int8"][strokes]
    seen = set(card["train_sources"])
    rows = "\n".join(
        f"| {src} | {'yes' if src in seen else 'no'} | {_pct(f.get('per_source', {}).get(src))} "
        f"| {_pct(q['per_source'][src])} |"
        for src in q["per_source"]
    )
    data = "\n".join(f"| {name} | `{sha}` |" for name, sha in card["data_sha256"].items())
    layers = "\n".join(f"    {row}" for row in card["architecture"])
    rejects = card.get("rejects") or {}
    reasons = rejects.get("reasons", {})
    verdict = card.get("verdict") or {}
    letters = next((v for k, v in acc["int8"].items() if isinstance(v, dict) and "groups" in v), {})
    groups = letters.get("groups", {})
    group_rows = "\n".join(
        f"| {g} | {v['count']} | {_pct(v['rejected'])} | {_num(v['top_digit_p_mean'])} |"
        for g, v in groups.items()
    )
    t = card.get("training", {})
    return f"""# {card["name"]}.tflite

Full-integer int8 CNN for single handwritten digits that also says when ink is not a digit,
served by `server/`; the server checks the file against its card
[`{card["name"]}.json`]({card["name"]}.json) at start-up. This page is generated from the card
by `python -m convert card`.

| | |
|---|---|
| size | {card["size_bytes"]:,} bytes (float32 model: {card["float_size_bytes"]:,} bytes) |
| parameters | {card["parameters"]:,} |
| input | `{card["input"]["dtype"]}` {card["input"]["shape"]}, scale {card["input"]["scale"]:.6g}, \
zero point {card["input"]["zero_point"]} (0..255, 255 = ink) |
| output | `{card["output"]["dtype"]}` {card["output"]["shape"]} logits (digits 0-9, then \
"not a digit"), scale {card["output"]["scale"]:.6g}, zero point {card["output"]["zero_point"]}; \
softmax of logits / temperature in `server/model.py` |
| temperature | {card.get("temperature", 1.0)} (fitted after quantization; see Calibration) |
| verdict thresholds | not_digit when P(not a digit) >= {verdict.get("reject_at")}; unsure when \
the top digit's P < {verdict.get("unsure_below")} (server defaults; `--reject-at`, \
`--unsure-below`) |
| preprocessing | `server/raster.py` version {card["raster_version"]}, pen radius \
{card["pen"]["radius"]} px, soft edge {card["pen"]["soft"]} px |
| single-image inference | {card["inference_us_median_1thread"]} us median, one CPU thread \
({card["inference_machine"]}); `{COMMANDS["speed"]}` for the benchmark |
| sha256 | `{card["sha256"]}` |

## Writers it never saw: leave one source out

{_loso_section(card.get("loso"), t, card["train_sources"])}
{card.get("comparison", "")}## The shipped model (trained on every source)

| data | float32 | int8 |
|---|---:|---:|
| MNIST test (10,000; the top digit, a rejection not counted) \
| {_pct(acc["float"]["mnist_test"])} | {_pct(acc["int8"]["mnist_test"])} |
| MNIST test digits rejected as not a digit | {_pct(acc["float"].get("mnist_rejected"))} \
| {_pct(acc["int8"].get("mnist_rejected"))} |
| {strokes}, all sources (a rejected digit counts as wrong) | {_pct(f.get("all_sources"))} \
| {_pct(q["all_sources"])} |
| {strokes}, digits rejected as not a digit | {_pct(f.get("rejected"))} \
| {_pct(q.get("rejected"))} |
| {strokes}, ECE complete; at 25 / 50 / 75% of the points | {_eces(f)} | {_eces(q)} |
| {strokes}, ECE of the guesses seen while drawing (25, 50, 75 and 100% pooled) \
| {_num(f.get("ece_live"))} | {_num(q.get("ece_live"))} |
{_float_note(acc, verdict)}

Per UNIPEN source (all are in training, but for the 1 in 8 samples kept out for calibration;
these figures say little about new writers, the table above does):

| source | in training | float32 | int8 |
|---|---|---:|---:|
{rows}

Command: `{COMMANDS["evaluate"]}`.

## Not a digit: which labels must be rejected

The UNIPEN letters and symbols file is split by its README's look-alike table
(`convert/labels.py`):

* **lookalike** (`{rejects.get("lookalike", "")}`): {reasons.get("lookalike", "")}.
* **similar** (`{rejects.get("similar", "")}`): {reasons.get("similar", "")}.
* **reject** ({rejects.get("reject", "")}, e.g. `A E F H K M N R W X k m n w x # % @ * + - = ~`):
  {reasons.get("reject", "")}.

Only the **reject** group is trained as "not a digit" (with synthetic scribbles); the other two
groups are never trained on. Thresholds: {THRESHOLDS_WHY}.

Figures of the shipped model on the whole letters file (its
sources were in training, so these are optimistic; the leave-one-source-out table above is
the honest one):

| group | samples | rejected | mean P(top digit) x P(digit) |
|---|---:|---:|---:|
{group_rows}

## Calibration

{_prefix_training(t)} After int8 quantization one temperature is
fitted on {card.get("calibration", {}).get("what", "held-out drawings")}.
ECE = expected calibration error of the top digit's probability, 15 equal bins.

What the probability can honestly mean while drawing: `convert evaluate` also reports
`ece_live`, the ECE over every digit's guess at 25, 50, 75 and 100% of its points pooled (a
guess shown at p while drawing is right about p of the time). Calibrating each of those moments
separately (`ece_prefix`) would need the server to know how much of the digit is still to come:
a quarter of a 7 is a complete 1. `bench/calibration.py` measures this on the
leave-one-source-out fold models, with maps that use only the ink and with one map per moment
(which needs the future); its table is in docs/BENCHMARKS.md.

## Architecture

{layers}

## Training

{_training_section(t)}

    {t.get("command")}

## Data (SHA-256 of the uncompressed MNIST files and of the strokes files)

| file | sha256 |
|---|---|
{data}
"""
