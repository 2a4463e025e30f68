"""Train the digit CNN with Keras on MNIST plus pen strokes drawn by `server.raster`.

Belongs here: the architecture, the augmentation pipeline and the training loop.
TensorFlow is imported lazily so `python -m convert --help` works without it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from convert.augment import render_augmented
from convert.data import MNIST_DIR, UNIPEN_FILE, load_mnist, load_strokes

#: UNIPEN sources drawn into the training set; every other source stays unseen for evaluation.
TRAIN_SOURCES = ("apa", "apb", "app", "gmd")


@dataclass
class TrainConfig:
    mnist_dir: Path = MNIST_DIR
    strokes: Path | None = UNIPEN_FILE
    train_sources: tuple[str, ...] = TRAIN_SOURCES
    stroke_copies: int = 8
    epochs: int = 18
    batch_size: int = 128
    learning_rate: float = 2e-3
    seed: int = 20261127
    limit: int | None = None  # train on the first N MNIST images only (smoke tests)
    extra: dict[str, Any] = field(default_factory=dict)


def build_model() -> Any:
    """A small CNN: ~22M multiply-adds, ~290k parameters; outputs logits."""
    import keras
    from keras import layers

    def block(x: Any, filters: int, kernel: int = 3) -> Any:
        x = layers.Conv2D(filters, kernel, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x)

    inp = keras.Input((28, 28, 1), name="image")
    x = block(inp, 32)
    x = block(x, 32)
    x = layers.MaxPooling2D()(x)  # 14x14
    x = block(x, 64)
    x = block(x, 64)
    x = layers.MaxPooling2D()(x)  # 7x7
    x = block(x, 128)
    x = layers.MaxPooling2D()(x)  # 3x3
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(128, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(10, name="logits")(x)
    return keras.Model(inp, out, name="digits_cnn")


def training_arrays(cfg: TrainConfig) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], int]:
    """MNIST train images plus augmented stroke renders; returns images, labels, #MNIST."""
    mnist = load_mnist(cfg.mnist_dir, "train")
    images, labels = mnist.images, mnist.labels
    if cfg.limit is not None:
        images, labels = images[: cfg.limit], labels[: cfg.limit]
    n_mnist = len(images)
    if cfg.strokes is not None:
        samples = [s for s in load_strokes(cfg.strokes) if s.source in cfg.train_sources]
        if cfg.limit is not None:
            samples = samples[: cfg.limit]
        t0 = time.perf_counter()
        s_img, s_lab = render_augmented(samples, cfg.stroke_copies, cfg.seed)
        print(
            f"drew {len(s_img)} stroke images from {len(samples)} samples "
            f"({', '.join(cfg.train_sources)}) in {time.perf_counter() - t0:.1f}s",
            flush=True,
        )
        images = np.concatenate([images, s_img])
        labels = np.concatenate([labels, s_lab])
    return images, labels, n_mnist


def _dataset(
    images: npt.NDArray[np.uint8], labels: npt.NDArray[np.uint8], n_mnist: int, cfg: TrainConfig
) -> Any:
    """Shuffled batches; half the MNIST scans get one random affine warp (slant, rotation,
    zoom, shift) and some a thicker or thinner pen; stroke renders were augmented when drawn.
    One warp means one interpolation: chained warps blur scans until they no longer look like
    the sharp MNIST test digits."""
    import tensorflow as tf

    is_scan = np.arange(len(images)) < n_mnist

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


def train(cfg: TrainConfig) -> Any:
    """Train and return the Keras model (logits output)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    images, labels, n_mnist = training_arrays(cfg)
    print(f"training on {len(images)} images ({n_mnist} MNIST) for {cfg.epochs} epochs", flush=True)
    model = build_model()
    steps = cfg.epochs * int(np.ceil(len(images) / cfg.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps, alpha=0.02)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(_dataset(images, labels, n_mnist, cfg), epochs=cfg.epochs, verbose=2)
    return model


def representative_images(cfg: TrainConfig, count: int = 1000) -> npt.NDArray[np.float32]:
    """Calibration inputs for int8 quantization: a mix of MNIST scans and stroke renders."""
    images, _, _ = training_arrays(TrainConfig(**{**cfg.__dict__, "stroke_copies": 1}))
    rng = np.random.default_rng(cfg.seed)
    pick = rng.choice(len(images), size=min(count, len(images)), replace=False)
    return images[pick].astype(np.float32)[..., None] / 255.0
