"""server/model.py with the shipped model: accuracy on fixed real samples, batching, bad files,
accelerator choice and the tflite-runtime fallback."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convert.data import LETTERS_FILE, MNIST_DIR, UNIPEN_FILE, load_mnist, load_strokes
from convert.labels import group
from convert.trainset import is_calibration
from server.model import (
    _BUCKETS,
    DEFAULT_MODEL,
    Model,
    ModelError,
    _chunks,
    card_path,
    load_model,
    scores_from_logits,
)
from server.raster import rasterize

REPO = Path(__file__).resolve().parent.parent
TFLITE_PY = REPO / ".venv-tflite" / "bin" / "python"


@pytest.fixture(scope="module")
def model() -> Model:
    return load_model(DEFAULT_MODEL, "cpu")


@pytest.fixture(scope="module")
def unseen_samples(model: Model) -> tuple[np.ndarray, np.ndarray]:
    """Every 5th UNIPEN dev sample the model was not trained on: from sources it did not see,
    or from the calibration split that training leaves out."""
    seen = set(model.card["train_sources"])
    samples = [
        s for s in load_strokes(UNIPEN_FILE) if s.source not in seen or is_calibration(s.id)
    ][::5]
    images = np.stack([rasterize(s.strokes) for s in samples])  # type: ignore[misc]
    return images, np.array([s.label for s in samples])


def copy_model(tmp_path: Path) -> Path:
    target = tmp_path / "m.tflite"
    shutil.copy(DEFAULT_MODEL, target)
    shutil.copy(card_path(DEFAULT_MODEL), card_path(target))
    return target


def test_card_matches_the_shipped_file(model: Model) -> None:
    assert model.card["size_bytes"] == DEFAULT_MODEL.stat().st_size <= 500_000
    assert model.input_spec.dtype == "uint8" and model.output_spec.dtype == "int8"
    assert model.card["raster_version"] >= 1


def test_mnist_test_digits(model: Model) -> None:
    test = load_mnist(MNIST_DIR, "test")
    probs = model.predict_batch(test.images[:2000] / 255.0)
    # The shipped model reads 99.0% of these (99.3% of all 10,000; the card has the figure).
    assert (probs.argmax(axis=1) == test.labels[:2000]).mean() >= 0.985


def test_unipen_digits_from_unseen_sources(model: Model, unseen_samples: tuple) -> None:
    images, labels = unseen_samples
    accuracy = (model.predict_batch(images).argmax(axis=1) == labels).mean()
    assert accuracy >= 0.98


def test_probabilities_are_a_distribution(model: Model, unseen_samples: tuple) -> None:
    probs = model.predict_batch(unseen_samples[0][:64])
    assert probs.shape == (64, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (probs >= 0).all()


@pytest.mark.parametrize("n", [1, 3, 8, 33, 53, 200])
def test_batch_results_equal_single_results(model: Model, unseen_samples: tuple, n: int) -> None:
    images = unseen_samples[0][:n]
    batched = model.predict_batch(images)
    single = np.concatenate([model.predict_batch(images[i : i + 1]) for i in range(n)])
    np.testing.assert_allclose(batched, single, atol=1e-6)


@pytest.mark.parametrize("n", range(1, 300))
def test_a_batch_is_cut_into_buckets_with_little_padding(n: int) -> None:
    pieces = _chunks(n)
    assert [start for start, _ in pieces] == list(
        itertools.accumulate([b for _, b in pieces[:-1]], initial=0)
    )
    assert all(b in _BUCKETS for _, b in pieces)
    last_start, last = pieces[-1]
    assert 0 < n - last_start <= last  # covered exactly, only the last piece padded
    assert last - (n - last_start) <= last // 8


def test_empty_batch(model: Model) -> None:
    assert model.predict_batch(np.zeros((0, 28, 28))).shape == (0, 10)
    assert model.predict_scores(np.zeros((0, 28, 28))).not_digit.shape == (0,)


def test_letters_that_look_like_no_digit_are_scored_not_digit(
    model: Model, unseen_samples: tuple
) -> None:
    """Held-out letters and symbols that no digit resembles get P(not a digit) >= 0.5 far
    more often than held-out digits do."""
    letters = [
        s
        for s in load_strokes(LETTERS_FILE)
        if s.char is not None and group(s.char) == "reject" and is_calibration(s.id)
    ][::4]
    images = np.stack([rasterize(s.strokes) for s in letters])  # type: ignore[misc]
    not_digit = model.predict_scores(images).not_digit
    assert len(letters) > 200 and (not_digit >= 0.5).mean() >= 0.8
    digits = model.predict_scores(unseen_samples[0]).not_digit
    assert (digits >= 0.5).mean() <= 0.02 and ((digits >= 0) & (digits <= 1)).all()


def test_scores_from_logits() -> None:
    logits = np.array([[2.0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2.0]], np.float32)
    s = scores_from_logits(logits)
    np.testing.assert_allclose(s.digits.sum(), 1.0, rtol=1e-6)
    e2 = float(np.exp(2.0))
    assert s.digits[0].argmax() == 0 and s.not_digit[0] == pytest.approx(e2 / (2 * e2 + 9))
    assert s.digits[0, 0] == pytest.approx(e2 / (e2 + 9))  # renormalised among the digits
    hot = scores_from_logits(logits, temperature=0.5)
    cool = scores_from_logits(logits, temperature=2.0)
    assert hot.digits[0, 0] > s.digits[0, 0] > cool.digits[0, 0]  # T flattens or sharpens
    ten = scores_from_logits(logits[:, :10])  # a model without the not-a-digit class
    assert ten.not_digit[0] == 0 and ten.digits.shape == (1, 10)


def test_scores_stay_finite_when_one_class_dwarfs_the_others() -> None:
    """Far-apart logits (a float model, a tiny temperature) neither overflow nor give 0/0."""
    far = np.array([[-500.0] * 10 + [500.0], [500.0] + [-500.0] * 10], np.float32)
    s = scores_from_logits(far, temperature=0.1)
    assert np.isfinite(s.digits).all() and np.isfinite(s.not_digit).all()
    np.testing.assert_allclose(s.digits.sum(axis=1), 1.0, rtol=1e-6)
    assert s.not_digit[0] == 1.0 and s.not_digit[1] < 1e-30 and s.digits[1, 0] == 1.0


def test_card_temperature_must_be_positive(tmp_path: Path) -> None:
    path = copy_model(tmp_path)
    card = json.loads(card_path(path).read_text())
    card["temperature"] = 0
    card_path(path).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="positive temperature"):
        load_model(path, "cpu")


def test_wrong_input_shape_is_refused(model: Model) -> None:
    with pytest.raises(ValueError, match="28, 28"):
        model.predict_batch(np.zeros((2, 20, 20)))


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read model"):
        load_model(tmp_path / "nope.tflite")


def test_corrupt_model_file(tmp_path: Path) -> None:
    path = copy_model(tmp_path)
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelError, match="rejected the model"):
        load_model(path, "cpu")


def test_truncated_model_file(tmp_path: Path) -> None:
    path = copy_model(tmp_path)
    path.write_bytes(DEFAULT_MODEL.read_bytes()[:5000])
    with pytest.raises(ModelError):
        load_model(path, "cpu")


def test_missing_card(tmp_path: Path) -> None:
    path = copy_model(tmp_path)
    card_path(path).unlink()
    with pytest.raises(ModelError, match=r"card .* is missing"):
        load_model(path, "cpu")


def test_unreadable_card(tmp_path: Path) -> None:
    path = copy_model(tmp_path)
    card_path(path).write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        load_model(path, "cpu")


@pytest.mark.parametrize(
    ("role", "field", "value"),
    [
        ("input", "scale", 0.5),
        ("input", "dtype", "int8"),
        ("output", "zero_point", 7),
        ("input", "shape", [1, 32, 32, 1]),
    ],
)
def test_card_that_does_not_match_the_file(
    tmp_path: Path, role: str, field: str, value: object
) -> None:
    path = copy_model(tmp_path)
    card = json.loads(card_path(path).read_text())
    card[role][field] = value
    card_path(path).write_text(json.dumps(card))
    with pytest.raises(ModelError, match=rf"{role} is .* but the model card says"):
        load_model(path, "cpu")


def test_auto_reports_the_accelerator_that_runs(unseen_samples: tuple) -> None:
    auto = load_model(DEFAULT_MODEL, "auto")
    assert auto.accelerator in {"cpu", "gpu"}
    cpu = load_model(DEFAULT_MODEL, "cpu")
    images = unseen_samples[0][:16]
    assert (auto.predict_batch(images).argmax(1) == cpu.predict_batch(images).argmax(1)).all()


def test_gpu_either_runs_or_fails_clearly() -> None:
    try:
        gpu = load_model(DEFAULT_MODEL, "gpu")
    except ModelError as exc:
        assert "GPU accelerator unavailable" in str(exc)
    else:
        assert gpu.accelerator == "gpu"


def test_tflite_runtime_fallback(model: Model, unseen_samples: tuple, tmp_path: Path) -> None:
    """The same wrapper on tflite-runtime (numpy<2, no LiteRT) gives the same answers."""
    if not TFLITE_PY.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{TFLITE_PY} missing: `make test` builds it")
        pytest.skip("no .venv-tflite (make test builds it)")
    images = unseen_samples[0][:32]
    np.save(tmp_path / "x.npy", images)
    code = (
        "import sys, numpy as np; from server.model import load_model, runtime_name; "
        "m = load_model(sys.argv[1], 'auto'); "
        "np.save(sys.argv[3], m.logits(np.load(sys.argv[2]))); "
        "print(runtime_name(), m.accelerator, np.__version__)"
    )
    out = subprocess.run(
        [
            str(TFLITE_PY),
            "-c",
            code,
            str(DEFAULT_MODEL),
            str(tmp_path / "x.npy"),
            str(tmp_path / "y.npy"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    runtime, accelerator, numpy_version = out.stdout.split()
    assert runtime == "tflite-runtime" and accelerator == "cpu" and numpy_version.startswith("1.")
    # The two runtimes' int8 kernels may round a logit one quantization step apart.
    fallback, litert = np.load(tmp_path / "y.npy"), model.logits(images)
    np.testing.assert_allclose(fallback, litert, atol=model.output_spec.scale * 1.01)
    assert (fallback.argmax(axis=1) == litert.argmax(axis=1)).all()


def test_module_imports_without_litert_installed() -> None:
    """server.model must not need aiohttp or LiteRT at import time (tflite-runtime path)."""
    code = "import sys; sys.modules['ai_edge_litert'] = None; import server.model; print('ok')"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert out.stdout.strip() == "ok", out.stderr
