"""convert/: data checks, the mirror download on local files, and a training smoke test that
trains, quantizes, evaluates and serves a model end to end."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convert.data import (
    MNIST_DIR,
    MNIST_SHA256,
    UNIPEN_FILE,
    DataError,
    download_mnist,
    iter_strokes,
    load_mnist,
    read_idx,
)
from server.model import load_model
from server.raster import rasterize

REPO = Path(__file__).resolve().parent.parent


def run_convert(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "convert", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        check=False,
        timeout=600,
    )


def test_mnist_loads_and_verifies() -> None:
    test = load_mnist(MNIST_DIR, "test")
    assert test.images.shape == (10000, 28, 28) and test.labels.shape == (10000,)
    assert set(np.unique(test.labels)) == set(range(10))


def test_uncompressed_files_are_read_too(tmp_path: Path) -> None:
    name = "t10k-labels-idx1-ubyte"
    (tmp_path / name).write_bytes(gzip.decompress((MNIST_DIR / f"{name}.gz").read_bytes()))
    assert read_idx(tmp_path, name).shape == (10000,)


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    name = "t10k-labels-idx1-ubyte"
    data = bytearray(gzip.decompress((MNIST_DIR / f"{name}.gz").read_bytes()))
    data[100] ^= 1
    (tmp_path / name).write_bytes(bytes(data))
    with pytest.raises(DataError, match="SHA-256"):
        read_idx(tmp_path, name)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path, "train")


def test_download_from_a_mirror_verifies_each_file(tmp_path: Path) -> None:
    dest = download_mnist(tmp_path / "mnist", mirror=MNIST_DIR.resolve().as_uri())
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.gz" for n in MNIST_SHA256)
    assert load_mnist(dest, "test").images.shape == (10000, 28, 28)


def test_download_rejects_a_corrupt_mirror(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in MNIST_SHA256:
        shutil.copy(MNIST_DIR / f"{name}.gz", mirror)
    bad = mirror / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(bad.read_bytes()))
    data[-1] ^= 1
    bad.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(DataError, match="t10k-labels"):
        download_mnist(tmp_path / "dest", mirror=mirror.as_uri())
    assert not (tmp_path / "dest" / "t10k-labels-idx1-ubyte.gz").exists()


def test_bad_stroke_lines_are_reported_by_line_number(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(
        '{"id": "a", "label": 1, "strokes": [[[0, 0], [0, 9]]]}\nnot json\n{"id": "c"}\n'
    )
    items = list(iter_strokes(path))
    assert not isinstance(items[0], DataError) and items[0].label == 1
    assert isinstance(items[1], DataError) and ":2:" in str(items[1])
    assert isinstance(items[2], DataError) and ":3:" in str(items[2])


@pytest.mark.slow
def test_training_smoke_trains_quantizes_and_serves(tmp_path: Path) -> None:
    out = tmp_path / "smoke.tflite"
    result = run_convert("all", "--limit", "300", "--epochs", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["input"]["dtype"] == "uint8" and card["output"]["dtype"] == "int8"
    assert card["training"]["limit"] == 300 and card["size_bytes"] == out.stat().st_size
    assert set(card["accuracy"]) == {"float", "int8"}

    model = load_model(out, "cpu")
    sample = next(s for s in iter_strokes(UNIPEN_FILE) if not isinstance(s, DataError))
    probs = model.predict_batch(rasterize(sample.strokes)[None])  # type: ignore[index]
    assert probs.shape == (1, 10) and abs(float(probs.sum()) - 1) < 1e-5

    strokes = tmp_path / "few.jsonl"
    lines = gzip.decompress(UNIPEN_FILE.read_bytes()).decode().splitlines()[:40]
    strokes.write_text("\n".join(lines) + "\n")
    ev = run_convert("evaluate", "--model", str(out), "--strokes", str(strokes), "--json")
    assert ev.returncode == 0, ev.stderr[-3000:]
    report = json.loads(ev.stdout)
    assert 0.0 <= report["mnist_accuracy"] <= 1.0
    assert report["strokes"][str(strokes)]["count"] == 40
    assert 0.0 <= report["strokes"][str(strokes)]["accuracy"] <= 1.0

    assert run_convert("card", "--model", str(out)).returncode == 0
    readme = (tmp_path / "README.md").read_text()
    assert f"{card['size_bytes']:,} bytes" in readme
    assert f"| MNIST test (10,000) | {card['accuracy']['float']['mnist_test']:.2%} |" in readme


def test_evaluate_reports_a_bad_model_clearly(tmp_path: Path) -> None:
    result = run_convert("evaluate", "--model", str(tmp_path / "missing.tflite"), "--json")
    assert result.returncode == 2 and "cannot read model" in result.stderr
