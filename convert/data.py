"""Training and evaluation data: MNIST IDX files (checked against published checksums),
an optional download from a mirror, and pen-stroke JSON Lines files such as UNIPEN.

Belongs here: reading and verifying files. No TensorFlow, no model.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from protocol.strokefile import InputError, LineError, read_samples

REPO = Path(__file__).resolve().parent.parent
MNIST_DIR = Path(os.environ.get("DIGITS_MNIST_DIR", REPO.parent / "shared" / "data" / "mnist"))
UNIPEN_FILE = Path(
    os.environ.get(
        "DIGITS_UNIPEN_FILE", REPO.parent / "shared" / "data" / "unipen" / "unipen1a-dev.jsonl.gz"
    )
)
LETTERS_FILE = Path(
    os.environ.get(
        "DIGITS_LETTERS_FILE",
        REPO.parent / "shared" / "data" / "unipen" / "unipen1bcd-dev.jsonl.gz",
    )
)
MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"

#: SHA-256 of the *uncompressed* standard MNIST files (the gzip wrappers vary between mirrors).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


class DataError(RuntimeError):
    """A data file is missing, corrupt or fails its checksum."""


@dataclass(frozen=True)
class Split:
    images: npt.NDArray[np.uint8]  # (N, 28, 28), 255 = ink
    labels: npt.NDArray[np.uint8]  # (N,)


def _read_idx_bytes(directory: Path, name: str) -> bytes:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.exists():
            raw = candidate.read_bytes()
            return gzip.decompress(raw) if candidate.suffix == ".gz" else raw
    raise DataError(f"{name}(.gz) not found in {directory}")


def read_idx(directory: Path, name: str) -> npt.NDArray[np.uint8]:
    """One IDX file (gzipped or not), verified against its published SHA-256."""
    data = _read_idx_bytes(directory, name)
    digest = hashlib.sha256(data).hexdigest()
    if name in MNIST_SHA256 and digest != MNIST_SHA256[name]:
        raise DataError(f"{name} in {directory}: SHA-256 {digest} is not the published one")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist(directory: Path = MNIST_DIR, split: str = "train") -> Split:
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(directory, f"{prefix}-images-idx3-ubyte")
    labels = read_idx(directory, f"{prefix}-labels-idx1-ubyte")
    if len(images) != len(labels):
        raise DataError(f"{directory}: {len(images)} images but {len(labels)} labels")
    return Split(images, labels)


def download_mnist(dest: Path, mirror: str = MIRROR) -> Path:
    """Fetch the four gzipped files from `mirror` (any URL urllib opens, file:// included)
    into `dest`, verifying each; files already present and valid are kept."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in MNIST_SHA256:
        target = dest / f"{name}.gz"
        if target.exists():
            try:
                read_idx(dest, name)
                continue
            except DataError:
                target.unlink()
        tmp = target.with_suffix(".part")
        url = mirror.rstrip("/") + f"/{name}.gz"
        with urllib.request.urlopen(url, timeout=60) as resp, tmp.open("wb") as out:
            shutil.copyfileobj(resp, out)
        tmp.replace(target)
        try:
            read_idx(dest, name)
        except (DataError, OSError, EOFError) as exc:
            target.unlink(missing_ok=True)
            raise DataError(f"downloaded {name}.gz failed its check: {exc}") from exc
    return dest


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class StrokeSample:
    id: str
    source: str
    label: int | None
    strokes: tuple[tuple[tuple[float, ...], ...], ...]
    char: str | None = None  # the label of a letter or symbol (never a digit)

    @property
    def name(self) -> str | None:
        """The label as written in reports: "7", "A", "#", or None when unlabelled."""
        return str(self.label) if self.label is not None else self.char


def iter_strokes(path: Path) -> Iterator[StrokeSample | DataError]:
    """Samples of a JSON Lines strokes file (gzipped or not), read and checked by the same
    parser as `digits-client`. A bad line yields a DataError naming its line number instead
    of stopping the whole file."""
    try:
        for item in read_samples(str(path)):
            if isinstance(item, LineError):
                yield DataError(str(item))
            else:
                yield StrokeSample(item.id, item.source, item.label, item.strokes, item.char)
    except InputError as exc:
        raise DataError(str(exc)) from exc


def load_strokes(path: Path) -> list[StrokeSample]:
    """All samples of a strokes file; any bad line is an error."""
    out = []
    for item in iter_strokes(path):
        if isinstance(item, DataError):
            raise item
        out.append(item)
    return out
