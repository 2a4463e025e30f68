"""Accuracy of the bundled model on images through server.images, the preprocessing the
HTTP endpoint uses: MNIST test digits written as PNG (28x28 and upscaled to 280x280, both
polarities), and UNIPEN dev digits drawn as images in many styles (sizes 64-600 px, pen
widths, positions, dark on light and light on dark, colour ink, sensor noise and specks).
Prints one table row per condition, and the raster (strokes) accuracy of the same UNIPEN
digits as the reference.

    .venv/bin/python bench/image_accuracy.py [--mnist 10000] [--unipen 0] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import machine_line
from convert.data import UNIPEN_FILE, load_mnist, load_strokes
from server.images import preprocess
from server.model import DEFAULT_MODEL, Model, load_model
from server.raster import rasterize

Colour = tuple[int, int, int]
_SUPER = 4  # strokes are drawn at 4x and box-reduced: anti-aliased edges


@dataclass(frozen=True)
class Style:
    """How one UNIPEN digit is drawn as an image."""

    size: int = 280  # canvas side, px
    height: float = 0.7  # digit height (its longer side) as a share of the canvas
    width: float = 0.09  # pen width as a share of the digit's longer side
    offset: tuple[float, float] = (0.0, 0.0)  # centre shift, share of the free margin
    ink: Colour = (0, 0, 0)
    paper: Colour = (255, 255, 255)
    noise: float = 0.0  # sensor noise: Gaussian sigma, in 0..1 units
    specks: int = 0  # isolated dots of ink-coloured dirt
    fmt: str = "PNG"


def draw_strokes(
    strokes: Iterable[Sequence[Sequence[float]]], style: Style, seed: int = 0
) -> bytes:
    """The strokes drawn as an image file (style.fmt) with a round pen."""
    pts = [np.asarray(s, np.float64)[:, :2] for s in strokes if len(s)]
    allp = np.concatenate(pts)
    lo, hi = allp.min(0), allp.max(0)
    span = max(float((hi - lo).max()), 1e-9)
    side = style.size * _SUPER
    digit = style.height * side
    pen = max(style.width * digit, 1.5 * _SUPER)
    scale = (digit - pen) / span
    margin = (side - (hi - lo) * scale) / 2.0
    shift = np.asarray(style.offset) * np.maximum(margin - pen, 0.0)
    picture = Image.new("RGB", (side, side), style.paper)
    pen_draw = ImageDraw.Draw(picture)
    r = pen / 2.0
    for s in pts:
        xy = (s - lo) * scale + margin + shift
        flat = [(float(x), float(y)) for x, y in xy]
        if len(flat) > 1:
            pen_draw.line(flat, fill=style.ink, width=round(pen), joint="curve")
        for x, y in flat:
            pen_draw.ellipse((x - r, y - r, x + r, y + r), fill=style.ink)
    picture = picture.reduce(_SUPER)
    picture = _dirty(picture, style, np.random.default_rng(seed))
    out = io.BytesIO()
    picture.save(out, style.fmt, **({"quality": 90} if style.fmt == "JPEG" else {}))
    return out.getvalue()


def _dirty(picture: Image.Image, style: Style, rng: np.random.Generator) -> Image.Image:
    if not style.noise and not style.specks:
        return picture
    pixels = np.asarray(picture, np.float64) / 255.0
    pixels = pixels + rng.normal(0.0, style.noise, pixels.shape)
    n = style.size
    for y, x in rng.integers(0, n, (style.specks, 2)):
        d = int(rng.integers(1, max(2, n // 100) + 1))
        pixels[y : y + d, x : x + d] = np.asarray(style.ink) / 255.0
    return Image.fromarray(np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8))


def png(pixels: npt.NDArray[np.uint8]) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def accuracy(model: Model, files: list[bytes], labels: Sequence[int] | npt.NDArray[Any]) -> float:
    images = np.stack([preprocess(f) for f in files])
    predicted = np.concatenate(
        [model.predict_batch(images[i : i + 128]).argmax(1) for i in range(0, len(images), 128)]
    )
    return float((predicted == np.asarray(labels)).mean())


def mnist_rows(model: Model, count: int) -> list[tuple[str, int, float]]:
    test = load_mnist(split="test")
    images, labels = test.images[:count], test.labels[:count]
    rows = []
    for name, light_on_dark in (("light on dark (as stored)", True), ("dark on light", False)):
        for side in (28, 280):
            files = []
            for img in images:
                pixels = img if light_on_dark else 255 - img
                if side != 28:
                    big = Image.fromarray(pixels).resize((side, side), Image.Resampling.BICUBIC)
                    pixels = np.asarray(big)
                files.append(png(pixels))
            rows.append(
                (
                    f"MNIST test {side}x{side} PNG, {name}",
                    len(files),
                    accuracy(model, files, labels),
                )
            )
    return rows


def unipen_styles() -> dict[str, Callable[[np.random.Generator], Style]]:
    """Conditions: each maps a random generator to the style of one drawing."""

    def pick(rng: np.random.Generator, values: Sequence[Any]) -> Any:
        return values[int(rng.integers(len(values)))]

    sizes = (64, 100, 160, 280, 400, 600)

    def varied(rng: np.random.Generator, **kw: Any) -> Style:
        return Style(
            size=pick(rng, sizes),
            height=float(rng.uniform(0.35, 0.9)),
            width=float(rng.uniform(0.03, 0.16)),
            offset=(float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1))),
            **kw,
        )

    colours: list[tuple[Colour, Colour]] = [
        ((200, 0, 0), (255, 255, 255)),
        ((0, 0, 180), (250, 245, 230)),
        ((0, 120, 0), (255, 255, 255)),
        ((255, 200, 0), (20, 20, 60)),
        ((40, 40, 40), (200, 220, 255)),
    ]
    return {
        "plain 280 px, dark on light": lambda rng: Style(),
        "sizes 64-600, widths, positions, dark on light": lambda rng: varied(rng),
        "sizes 64-600, widths, positions, light on dark": lambda rng: varied(
            rng, ink=(255, 255, 255), paper=(0, 0, 0)
        ),
        "colour ink on colour paper": lambda rng: varied(
            rng, **dict(zip(("ink", "paper"), pick(rng, colours), strict=True))
        ),
        "sensor noise (sigma 0.04-0.12) and specks": lambda rng: varied(
            rng, noise=float(rng.uniform(0.04, 0.12)), specks=int(rng.integers(0, 12))
        ),
        "JPEG quality 90, light on dark, noise": lambda rng: varied(
            rng, ink=(230, 230, 230), paper=(30, 30, 30), noise=0.03, fmt="JPEG"
        ),
    }


def unipen_rows(model: Model, count: int, seed: int) -> list[tuple[str, int, float]]:
    samples = [s for s in load_strokes(UNIPEN_FILE) if s.label is not None]
    if count:
        samples = samples[:count]
    labels = [int(s.label) for s in samples if s.label is not None]
    drawn = [rasterize(s.strokes) for s in samples]
    raster = np.stack([img for img in drawn if img is not None])  # labelled digits have ink
    reference = float((model.predict_batch(raster).argmax(1) == np.asarray(labels)).mean())
    rows = [("UNIPEN dev as strokes (server.raster, reference)", len(samples), reference)]
    for name, style_of in unipen_styles().items():
        rng = np.random.default_rng(seed)
        files = [draw_strokes(s.strokes, style_of(rng), seed + i) for i, s in enumerate(samples)]
        rows.append((f"UNIPEN dev as images: {name}", len(files), accuracy(model, files, labels)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--mnist", type=int, default=10000, help="MNIST test images (0: skip)")
    ap.add_argument("--unipen", type=int, default=0, help="UNIPEN dev samples (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = ap.parse_args()
    model = load_model(args.model, "cpu")
    rows = mnist_rows(model, args.mnist) if args.mnist else []
    rows += unipen_rows(model, args.unipen, args.seed)
    print(machine_line())
    print(f"# model {model.name}; images through server.images.preprocess")
    print("| condition | images | accuracy |")
    print("|---|---:|---:|")
    for name, n, acc in rows:
        print(f"| {name} | {n} | {acc:.2%} |")


if __name__ == "__main__":
    main()
