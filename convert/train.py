"""Train the digit CNN with Keras: ten digits and "not a digit", on MNIST plus pen strokes
drawn by `server.raster`. Two recipes: "joint" (the whole network from scratch on everything)
and "frozen" (a trunk pre-trained on MNIST alone and frozen, then the head on its features).

Belongs here: the architecture, the MNIST augmentation pipeline and the training loops.
TensorFlow is imported lazily so `python -m convert --help` works without it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from convert import trainset
from convert.data import LETTERS_FILE, MNIST_DIR, UNIPEN_FILE, load_mnist, load_strokes
from convert.trainset import Rows

#: Where trained trunks and rendered feature sets are kept between runs (git-ignored).
CACHE_DIR = Path(__file__).resolve().parent.parent / "runs" / "cache"
#: Bump when the trunk recipe changes, so a cached trunk of an older recipe is not reused.
TRUNK_RECIPE = 3


@dataclass
class TrainConfig:
    mnist_dir: Path = MNIST_DIR
    strokes: Path | None = UNIPEN_FILE
    letters: Path | None = LETTERS_FILE
    #: UNIPEN sources drawn into training; None means every source in the strokes file.
    train_sources: tuple[str, ...] | None = None
    #: "joint" (the shipped model since v6): the whole network trained from scratch on MNIST and
    #: the drawings; "frozen" (v5): an MNIST-only trunk, frozen, and a head on its features.
    recipe: str = "joint"
    joint_epochs: int = 12  # the joint recipe's whole network
    pretrain_epochs: int = 5  # the frozen recipe's MNIST trunk
    head_epochs: int = 12  # the frozen recipe's head
    batch_size: int = 128
    learning_rate: float = 2e-3
    seed: int = 20261127
    limit: int | None = None  # use only the first N MNIST images / samples (smoke tests)
    #: Also redraw some 0s, 1s and 7s in the other style of the digit (augment.STYLES).
    styles: bool = True
    cache_dir: Path = CACHE_DIR
    extra: dict[str, Any] = field(default_factory=dict)

    def trunk_key(self) -> str:
        """Names the cached trunk: everything the MNIST pre-training depends on."""
        recipe = [TRUNK_RECIPE, self.pretrain_epochs, self.batch_size, self.learning_rate]
        raw = json.dumps([*recipe, self.seed, self.limit, str(self.mnist_dir.resolve())])
        return hashlib.sha256(raw.encode()).hexdigest()[:12]


#: Output classes: the ten digits, then "not a digit" (letters, symbols, scribbles).
DIGITS = 10
NOT_DIGIT = 10
CLASSES = 11


def _block(x: Any, filters: int, name: str, strides: int = 1) -> Any:
    from keras import layers

    conv = layers.Conv2D(filters, 3, strides, padding="same", use_bias=False, name=f"{name}_conv")
    x = conv(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_trunk() -> Any:
    """Four conv blocks, 28x28 -> 7x7x64 features, downsampling by strided convolutions
    (~7.4M of the ~8.2M multiply-adds; with 3x3 convolutions at full resolution and max pooling
    instead it was ~22M and 1.8x slower at batch 1). The frozen recipe
    trains it once on MNIST alone, so each leave-one-source-out fold only trains the head."""
    import keras

    inp = keras.Input((28, 28, 1), name="image")
    x = _block(inp, 32, "b1")
    x = _block(x, 32, "b2", strides=2)  # 14x14
    x = _block(x, 64, "b3")
    x = _block(x, 64, "b4", strides=2)  # 7x7
    return keras.Model(inp, x, name="trunk")


FEATURE_SHAPE = (7, 7, 64)


def build_head(classes: int = CLASSES) -> Any:
    """Max pooling (7x7 -> 3x3), one conv block and two dense layers on the trunk's features;
    outputs logits. Pooling before the conv block instead of after it costs the same
    parameters and ~0.7M multiply-adds instead of ~3.6M (the model 12-18% faster; on
    leave-one-source-out as accurate, docs/BENCHMARKS.md)."""
    import keras
    from keras import layers

    inp = keras.Input(FEATURE_SHAPE, name="features")
    x = layers.MaxPooling2D(name="pool3")(inp)  # 3x3
    x = _block(x, 128, "b5")
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.3, name="drop1")(x)
    x = layers.Dense(128, use_bias=False, name="fc")(x)
    x = layers.BatchNormalization(name="fc_bn")(x)
    x = layers.ReLU(name="fc_relu")(x)
    x = layers.Dropout(0.3, name="drop2")(x)
    out = layers.Dense(classes, name="logits")(x)
    return keras.Model(inp, out, name=f"head{classes}")


def assemble(trunk: Any, head: Any) -> Any:
    """The served model: image -> trunk -> head -> logits, one flat graph."""
    import keras

    inp = keras.Input((28, 28, 1), name="image")
    return keras.Model(inp, head(trunk(inp)), name="digits_cnn")


def build_model(classes: int = CLASSES) -> Any:
    """A small CNN: ~8.2M multiply-adds, ~290k parameters; outputs logits."""
    return assemble(build_trunk(), build_head(classes))


def _dataset(
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.uint8],
    is_scan: npt.NDArray[np.bool_],
    cfg: TrainConfig,
) -> Any:
    """Shuffled batches; half the MNIST scans get one random affine warp (slant, rotation,
    zoom, shift) and some a thicker or thinner pen; stroke renders were augmented when drawn.
    One warp means one interpolation: chained warps blur scans until they no longer look like
    the sharp MNIST test digits."""
    import tensorflow as tf

    def prepare(x: Any, y: Any, scan: Any) -> Any:
        x = tf.cast(x, tf.float32)[..., None] / 255.0
        return x, y, scan

    def augment(x: Any, y: Any, scan: Any) -> Any:
        n = tf.shape(x)[0]
        warped = tf.raw_ops.ImageProjectiveTransformV3(
            images=x,
            transforms=_random_affines(n, cfg.seed),
            output_shape=[28, 28],
            fill_value=0.0,
            interpolation="BILINEAR",
            fill_mode="CONSTANT",
        )
        keep = tf.random.uniform((n, 1, 1, 1), seed=cfg.seed + 5) < 0.5
        aug = tf.where(keep, x, warped)
        # Pen width: thicken (grey dilation) or thin (erosion) about a quarter of the scans each.
        pick = tf.random.uniform((tf.shape(x)[0], 1, 1, 1), seed=cfg.seed + 4)
        thick = tf.nn.max_pool2d(aug, 2, 1, "SAME")
        thin = -tf.nn.max_pool2d(-aug, 2, 1, "SAME")
        aug = tf.where(pick < 0.25, thick, tf.where(pick > 0.8, thin, aug))
        x = tf.where(scan[:, None, None, None], aug, x)
        return tf.clip_by_value(x, 0.0, 1.0), y

    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32), is_scan))
    ds = ds.shuffle(len(images), seed=cfg.seed, reshuffle_each_iteration=True)
    ds = ds.map(prepare).batch(cfg.batch_size).map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _random_affines(n: Any, seed: int) -> Any:
    """(n, 8) projective transforms about the image centre: rotation up to 10 degrees,
    shear up to 0.3, zoom 0.9-1.1, shift up to 2 px."""
    import tensorflow as tf

    def uniform(lo: float, hi: float, k: int) -> Any:
        return tf.random.uniform((n,), lo, hi, seed=seed + k)

    angle, shear = uniform(-0.175, 0.175, 10), uniform(-0.3, 0.3, 11)
    zoom = uniform(0.9, 1.1, 12)
    tx, ty = uniform(-2.0, 2.0, 13), uniform(-2.0, 2.0, 14)
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    a00, a01, a10, a11 = cos, cos * shear - sin, sin, sin * shear + cos
    c = 13.5
    a2 = c - a00 * c - a01 * c + tx
    b2 = c - a10 * c - a11 * c + ty
    zero = tf.zeros_like(angle)
    return tf.stack([a00, a01, a2, a10, a11, b2, zero, zero], axis=1)


def _compile(model: Any, lr: float, steps: int) -> None:
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(lr, steps, alpha=0.02)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def pretrain_trunk(cfg: TrainConfig) -> Any:
    """The trunk, trained end to end with a 10-digit head on MNIST train alone (random warps
    and pen widths), or loaded from the cache. No UNIPEN ink reaches it, so one trunk serves
    every leave-one-source-out fold without leaking the held-out source."""
    import keras
    import tensorflow as tf

    trunk = build_trunk()
    path = cfg.cache_dir / f"trunk-{cfg.trunk_key()}.weights.h5"
    if path.exists():
        trunk.load_weights(path)
        print(f"trunk from {path}", flush=True)
        return trunk
    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    mnist = load_mnist(cfg.mnist_dir, "train")
    images, labels = mnist.images[: cfg.limit], mnist.labels[: cfg.limit]
    print(f"pre-training the trunk on {len(images)} MNIST images", flush=True)
    model = assemble(trunk, build_head(DIGITS))
    steps = cfg.pretrain_epochs * int(np.ceil(len(images) / cfg.batch_size))
    _compile(model, cfg.learning_rate, steps)
    scans = np.ones(len(images), bool)
    model.fit(_dataset(images, labels, scans, cfg), epochs=cfg.pretrain_epochs, verbose=2)
    cfg.cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.weights.h5")
    trunk.save_weights(tmp)
    tmp.replace(path)
    return trunk


def train_head(cfg: TrainConfig, rows: Rows) -> Any:
    """The 11-class head, trained on the trunk features of `rows` (MNIST scans, drawings of
    the training sources, letters and symbols to reject, scribbles)."""
    import keras
    import tensorflow as tf

    assert rows.features is not None
    keras.utils.set_random_seed(cfg.seed + 1)
    tf.config.experimental.enable_op_determinism()
    counts = np.bincount(rows.labels, minlength=CLASSES)
    print(f"training the head on {len(rows.labels)} rows (per class {counts.tolist()})", flush=True)
    head = build_head(CLASSES)
    steps = cfg.head_epochs * int(np.ceil(len(rows.labels) / cfg.batch_size))
    _compile(head, cfg.learning_rate, steps)
    ds = tf.data.Dataset.from_tensor_slices((rows.features, rows.labels.astype(np.int32)))
    ds = ds.shuffle(len(rows.labels), seed=cfg.seed, reshuffle_each_iteration=True)
    ds = ds.batch(cfg.batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y))
    head.fit(ds.prefetch(tf.data.AUTOTUNE), epochs=cfg.head_epochs, verbose=2)
    return head


def sources_of(cfg: TrainConfig) -> tuple[str, ...]:
    """The UNIPEN sources a config trains on (all sources in its files when unnamed)."""
    if cfg.train_sources is not None:
        return cfg.train_sources
    found: set[str] = set()
    for path in (cfg.strokes, cfg.letters):
        if path is not None:
            found.update(s.source for s in load_strokes(path))
    return tuple(sorted(found))


def train_joint(cfg: TrainConfig, rows: Rows) -> Any:
    """The whole 11-class network from scratch on `rows`: MNIST scans (warped on the fly as in
    the trunk's pre-training) and the drawings (distorted when drawn)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(cfg.seed + 2)
    tf.config.experimental.enable_op_determinism()
    counts = np.bincount(rows.labels, minlength=CLASSES)
    print(f"training the network on {len(rows.labels)} rows (per class {counts.tolist()})")
    model = build_model(CLASSES)
    steps = cfg.joint_epochs * int(np.ceil(len(rows.labels) / cfg.batch_size))
    _compile(model, cfg.learning_rate, steps)
    ds = _dataset(rows.images, rows.labels, rows.sources == "mnist", cfg)
    model.fit(ds, epochs=cfg.joint_epochs, verbose=2)
    return model


def train(cfg: TrainConfig) -> tuple[Any, Rows]:
    """The Keras model (logits out) and the rows it was trained on (MNIST plus the training
    sources' drawings): the whole network ("joint"), or the cached MNIST trunk with a head
    trained on its features ("frozen")."""
    keep_sources = [*sources_of(cfg), "mnist", "synthetic"]
    if cfg.recipe == "joint":
        rows = trainset.rendered(cfg)
        picked = rows.select(np.isin(rows.sources, keep_sources))
        return train_joint(cfg, picked), picked
    if cfg.recipe != "frozen":
        raise ValueError(f"unknown recipe {cfg.recipe!r}")
    trunk = pretrain_trunk(cfg)
    trunk.trainable = False
    rows = trainset.with_features(cfg, trunk)
    picked = rows.select(np.isin(rows.sources, keep_sources))
    head = train_head(cfg, picked)
    return assemble(trunk, head), picked


def representative_images(rows: Rows, seed: int, count: int = 1000) -> npt.NDArray[np.float32]:
    """Calibration inputs for int8 quantization: a random mix of the training rows."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(rows.labels), size=min(count, len(rows.labels)), replace=False)
    return rows.images[pick].astype(np.float32)[..., None] / 255.0
