"""The rendered training set, drawn once for every source and cached with its trunk features,
so each leave-one-source-out fold only picks rows and trains the head.

Belongs here: which drawings are made of which samples (complete digits, partial digits,
letters and symbols to reject, scribbles, MNIST scans), the calibration split, and the
feature cache. Rows carry their source so a fold can leave one out.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from convert import augment
from convert.data import StrokeSample, load_mnist, load_strokes
from convert.labels import group
from server.raster import MNIST_PEN

#: Bump when what is drawn changes, so cached feature sets of an older recipe are not reused.
RENDER_RECIPE = 2
NOT_DIGIT = 10
DIGIT_COPIES = 6  # complete drawings per digit sample; the first is undistorted
#: Distorted partial drawings per digit sample, cut at 15-95% of the points (what the live guess
#: and the prefix ECE see); for the joint recipe every other one is cut by ink length instead.
PREFIX_COPIES = 4
LETTER_COPIES = 2  # drawings per letter or symbol that must be rejected
SCRIBBLES = 3000
CALIBRATION_SHARE = 8  # one sample in 8 (by id hash) is kept out of training, for calibration
PREFIX_FRACTIONS = (0.25, 0.5, 0.75)
#: With `styles` (TrainConfig), this share of the redrawn 0s, 1s and 7s are written in the
#: other style of that digit (augment.STYLES: slashed 0, continental 1 and 7).
STYLE_SHARE = 0.25
STYLES_VERSION = 2  # 2: the 7's bar centred where the ink crosses its height


def is_calibration(sample_id: str) -> bool:
    """Whether a sample belongs to the calibration split (the same in every fold)."""
    return hashlib.sha1(sample_id.encode()).digest()[0] % CALIBRATION_SHARE == 0


@dataclass
class Rows:
    """Training rows: uint8 images (N, 28, 28), labels 0-10, the source of each row
    ("mnist", "synthetic" or a UNIPEN source) and the trunk features once computed."""

    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.uint8]
    sources: npt.NDArray[np.str_]
    features: npt.NDArray[np.float16] | None = None

    def select(self, keep: npt.NDArray[np.bool_]) -> Rows:
        feats = None if self.features is None else self.features[keep]
        return Rows(self.images[keep], self.labels[keep], self.sources[keep], feats)


def _trainable(samples: list[StrokeSample], limit: int | None) -> list[StrokeSample]:
    out = [s for s in samples if not is_calibration(s.id)]
    return out[:limit]


def _draw_digits(
    samples: list[StrokeSample], rng: np.random.Generator, by_ink: bool, styles: bool = False
) -> tuple[Any, ...]:
    drawings, pens, labels, sources = [], [], [], []
    for s in samples:
        ink = augment.as_arrays(s.strokes)
        if not ink or s.label is None:
            continue
        share = STYLE_SHARE if styles else 0.0
        variants = [ink] + [
            augment.distort(_styled(ink, s.label, share, rng), rng) for _ in range(DIGIT_COPIES - 1)
        ]
        for k in range(PREFIX_COPIES):
            cut = augment.prefix_by_ink if by_ink and k % 2 else augment.prefix
            whole = _styled(ink, s.label, share, rng)
            variants.append(augment.distort(cut(whole, rng.uniform(0.15, 0.95)), rng))
        drawings += variants
        pens += [MNIST_PEN] + [augment.random_pen(rng) for _ in variants[1:]]
        labels += [s.label] * len(variants)
        sources += [s.source] * len(variants)
    return drawings, pens, labels, sources


def _styled(
    ink: augment.Drawing, label: int, share: float, rng: np.random.Generator
) -> augment.Drawing:
    """`ink`, or (with probability `share`) the same digit in another style."""
    if share and rng.random() < share:
        return augment.restyle(ink, label, rng)
    return ink


def _draw_rejects(samples: list[StrokeSample], rng: np.random.Generator) -> tuple[Any, ...]:
    drawings, pens, sources = [], [], []
    for s in samples:
        ink = augment.as_arrays(s.strokes)
        if not ink or s.char is None or group(s.char) != "reject":
            continue
        variants = [ink] + [augment.distort(ink, rng) for _ in range(LETTER_COPIES - 1)]
        drawings += variants
        pens += [MNIST_PEN] + [augment.random_pen(rng) for _ in variants[1:]]
        sources += [s.source] * len(variants)
    return drawings, pens, [NOT_DIGIT] * len(drawings), sources


def _styles(cfg: Any) -> bool:
    """Whether digits are also redrawn in other styles (augment.STYLES)."""
    return bool(getattr(cfg, "styles", False))


def _ink_prefixes(cfg: Any) -> bool:
    """Whether half the partial drawings are cut by ink length (the joint recipe)."""
    return bool(getattr(cfg, "recipe", "frozen") == "joint")


def render(cfg: Any) -> Rows:
    """Every training row for every source; folds select from it by source."""
    rng = np.random.default_rng(cfg.seed)
    mnist = load_mnist(cfg.mnist_dir, "train")
    parts = [
        Rows(
            mnist.images[: cfg.limit],
            mnist.labels[: cfg.limit],
            np.full(len(mnist.labels[: cfg.limit]), "mnist"),
        )
    ]
    t0 = time.perf_counter()
    groups = []
    if cfg.strokes is not None:
        samples = _trainable(load_strokes(cfg.strokes), cfg.limit)
        groups.append(_draw_digits(samples, rng, _ink_prefixes(cfg), _styles(cfg)))
    if cfg.letters is not None:
        groups.append(_draw_rejects(_trainable(load_strokes(cfg.letters), cfg.limit), rng))
    n_scribbles = SCRIBBLES if cfg.limit is None else min(SCRIBBLES, cfg.limit)
    scribbles = [augment.scribble(rng) for _ in range(n_scribbles)]
    groups.append(
        (
            scribbles,
            [augment.random_pen(rng) for _ in scribbles],
            [NOT_DIGIT] * n_scribbles,
            ["synthetic"] * n_scribbles,
        )
    )
    for drawings, pens, labels, sources in groups:
        parts.append(
            Rows(
                augment.to_uint8(drawings, pens),
                np.asarray(labels, np.uint8),
                np.asarray(sources, dtype=np.str_),
            )
        )
    n = sum(len(p.labels) for p in parts[1:])
    print(f"drew {n} training drawings in {time.perf_counter() - t0:.0f}s", flush=True)
    return Rows(
        np.concatenate([p.images for p in parts]),
        np.concatenate([p.labels for p in parts]),
        np.concatenate([p.sources for p in parts]).astype(np.str_),
    )


def _file_id(path: Path | None) -> list[Any]:
    if path is None:
        return [None]
    st = path.stat()
    return [path.name, st.st_size, int(st.st_mtime)]


def cache_key(cfg: Any, trunk: bool = True) -> str:
    """Names a cached row set: the drawings (and the trunk whose features it holds, if any)."""
    raw = json.dumps(
        [
            RENDER_RECIPE,
            cfg.trunk_key() if trunk else None,
            _ink_prefixes(cfg),
            *([STYLE_SHARE, STYLES_VERSION] if _styles(cfg) else []),  # earlier keys unchanged
            cfg.seed,
            cfg.limit,
            _file_id(cfg.strokes),
            _file_id(cfg.letters),
        ]
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def _save(path: Path, rows: Rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    arrays: dict[str, Any] = {"images": rows.images, "labels": rows.labels, "sources": rows.sources}
    if rows.features is not None:
        arrays["features"] = rows.features
    np.savez(tmp, **arrays)
    tmp.replace(path)


def rendered(cfg: Any) -> Rows:
    """The rendered rows (images only), from the cache when present: what the jointly
    trained network learns from."""
    path = cfg.cache_dir / f"images-{cache_key(cfg, trunk=False)}.npz"
    if path.exists():
        with np.load(path) as z:
            print(f"training rows from {path}", flush=True)
            return Rows(z["images"], z["labels"], z["sources"])
    rows = render(cfg)
    _save(path, rows)
    return rows


def with_features(cfg: Any, trunk: Any) -> Rows:
    """The rendered rows and their trunk features, from the cache when present."""
    path = cfg.cache_dir / f"rows-{cache_key(cfg)}.npz"
    if path.exists():
        with np.load(path) as z:
            print(f"training rows from {path}", flush=True)
            return Rows(z["images"], z["labels"], z["sources"], z["features"])
    rows = rendered(cfg)
    t0 = time.perf_counter()
    x = rows.images.astype(np.float32)[..., None] / 255.0
    feats = np.concatenate(
        [trunk.predict_on_batch(x[i : i + 512]).astype(np.float16) for i in range(0, len(x), 512)]
    )
    print(f"trunk features of {len(x)} rows in {time.perf_counter() - t0:.0f}s", flush=True)
    rows.features = feats
    _save(path, rows)
    return rows


def calibration_set(cfg: Any, sources: tuple[str, ...]) -> tuple[Any, ...]:
    """Held-out drawings of the training sources for fitting the temperature after
    quantization: each calibration digit complete and at 25/50/75% of its points.
    Returns (drawings, labels)."""
    drawings: list[augment.Drawing] = []
    labels: list[int] = []
    if cfg.strokes is None:
        return drawings, labels
    for s in load_strokes(cfg.strokes):
        if s.source not in sources or not is_calibration(s.id) or s.label is None:
            continue
        ink = augment.as_arrays(s.strokes)
        if not ink:
            continue
        for f in (1.0, *PREFIX_FRACTIONS):
            drawings.append(augment.prefix(ink, f))
            labels.append(s.label)
    return drawings, labels
