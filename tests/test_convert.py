"""convert/: data checks, the mirror download on local files, and a training smoke test that
trains, quantizes, evaluates and serves a model end to end."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convert.augment import (
    as_arrays,
    distort,
    prefix,
    prefix_by_ink,
    restyle,
    scribble,
    to_uint8,
)
from convert.calibrate import fit_temperature
from convert.data import (
    LETTERS_FILE,
    MNIST_DIR,
    MNIST_SHA256,
    UNIPEN_FILE,
    DataError,
    download_mnist,
    iter_strokes,
    load_mnist,
    load_strokes,
    read_idx,
)
from convert.evaluate import ece
from convert.labels import group
from convert.loso import table as loso_table
from convert.ship import THRESHOLDS
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
@pytest.mark.parametrize("recipe", ["joint", "frozen"])
def test_training_smoke_trains_quantizes_and_serves(tmp_path: Path, recipe: str) -> None:
    out = tmp_path / "smoke.tflite"
    result = run_convert(
        "all", "--recipe", recipe, "--limit", "300", "--epochs", "1", "--pretrain-epochs", "1",
        "--cache", str(tmp_path / "cache"), "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["input"]["dtype"] == "uint8" and card["output"]["dtype"] == "int8"
    assert card["output"]["shape"] == [1, 11] and card["temperature"] > 0
    assert card["verdict"] == {
        "reject_at": THRESHOLDS.reject_at,
        "unsure_below": THRESHOLDS.unsure_below,
    }
    assert card["rejects"]["lookalike"] and card["loso"] is None
    assert card["training"]["limit"] == 300 and card["size_bytes"] == out.stat().st_size
    assert card["training"]["recipe"] == recipe
    assert set(card["accuracy"]) == {"float", "int8"}

    model = load_model(out, "cpu")
    sample = next(s for s in iter_strokes(UNIPEN_FILE) if not isinstance(s, DataError))
    probs = model.predict_batch(rasterize(sample.strokes)[None])  # type: ignore[index]
    assert probs.shape == (1, 10) and abs(float(probs.sum()) - 1) < 1e-5
    assert 0 <= model.predict_scores(rasterize(sample.strokes)[None]).not_digit[0] <= 1  # type: ignore[index]

    strokes = tmp_path / "few.jsonl"
    lines = gzip.decompress(UNIPEN_FILE.read_bytes()).decode().splitlines()[:40]
    strokes.write_text("\n".join(lines) + "\n")
    ev = run_convert("evaluate", "--model", str(out), "--strokes", str(strokes), "--json")
    assert ev.returncode == 0, ev.stderr[-3000:]
    report = json.loads(ev.stdout)
    assert 0.0 <= report["mnist_accuracy"] <= 1.0
    assert report["strokes"][str(strokes)]["count"] == 40
    assert 0.0 <= report["strokes"][str(strokes)]["accuracy"] <= 1.0
    assert list(report["strokes"][str(strokes)]["ece_prefix"]) == ["0.25", "0.5", "0.75"]

    assert run_convert("card", "--model", str(out)).returncode == 0
    readme = (tmp_path / "README.md").read_text()
    assert f"{card['size_bytes']:,} bytes" in readme
    mnist = card["accuracy"]["float"]["mnist_test"]
    assert (
        f"| MNIST test (10,000; the top digit, a rejection not counted) | {mnist:.2%} |" in readme
    )
    _remeasuring_changes_thresholds_not_weights(tmp_path, out, strokes)


def _remeasuring_changes_thresholds_not_weights(tmp: Path, model: Path, strokes: Path) -> None:
    """`card --remeasure` and `loso --remeasure` measure kept models again at the thresholds
    of convert/ship.py: a card written at other thresholds gets them and new int8 figures."""
    letters = tmp / "letters.jsonl"
    letters.write_text("\n".join(_lines(LETTERS_FILE, lambda _: True, 30)) + "\n")
    files = ("--strokes", str(strokes), "--letters", str(letters))
    wanted = {"reject_at": THRESHOLDS.reject_at, "unsure_below": THRESHOLDS.unsure_below}
    old = {"reject_at": 0.99, "unsure_below": 0.1}

    card = json.loads(model.with_suffix(".json").read_text())
    model.with_suffix(".json").write_text(json.dumps({**card, "verdict": old}))
    assert run_convert("card", "--remeasure", "--model", str(model), *files).returncode == 0
    card = json.loads(model.with_suffix(".json").read_text())
    assert card["verdict"] == wanted and card["accuracy"]["float_verdict"] == old
    ev = run_convert("evaluate", "--model", str(model), "--strokes", str(strokes), "--json")
    measured = json.loads(ev.stdout)
    assert card["accuracy"]["int8"]["mnist_rejected"] == measured["mnist"]["rejected"]
    assert card["accuracy"]["int8"][letters.name]["groups"]  # the letters were measured
    assert (
        "measured at the thresholds of its training run (reject_at 0.99)"
        in (tmp / "README.md").read_text()
    )

    folds = tmp / "folds"
    folds.mkdir()
    source = json.loads(strokes.read_text().splitlines()[0])["source"]
    shutil.copy(model, folds / f"model-{source}.tflite")
    (folds / f"model-{source}.json").write_text(json.dumps({**card, "verdict": old}))
    about = {"holdout": source, "train_sources": [], "recipe": "joint", "epochs": 1}
    (folds / f"fold-{source}.json").write_text(json.dumps({**about, "temperature": 1.0}))
    result = run_convert("loso", "--remeasure", "--out", str(folds), *files)
    assert result.returncode == 0, result.stderr[-3000:]
    fold = json.loads((folds / f"fold-{source}.json").read_text())
    assert fold["verdict"] == wanted and fold["holdout"] == source
    count = sum(json.loads(line)["source"] == source for line in strokes.read_text().splitlines())
    assert fold["digits"]["count"] == count
    summary = json.loads((folds / "summary.json").read_text())
    assert summary["verdict"] == wanted and summary["per_source"][source]["digits"] == count


def _lines(path: Path, keep: Callable[[dict[str, Any]], bool], count: int) -> list[str]:
    out = []
    for line in gzip.decompress(path.read_bytes()).decode().splitlines():
        if keep(json.loads(line)):
            out.append(line)
            if len(out) == count:
                break
    return out


def test_evaluate_json_reports_accuracy_rejection_and_calibration(tmp_path: Path) -> None:
    """Per strokes file: count, accuracy, rejected, per_label, ece, ece_prefix; a file of
    letters has accuracy null; sources the model never heard of are fine."""
    digits = tmp_path / "digits.jsonl"
    rows = [json.loads(x) for x in _lines(UNIPEN_FILE, lambda o: o["source"] == "ced", 60)]
    for row in rows:
        row["source"] = "zzz"  # a writer from elsewhere
    digits.write_text("".join(json.dumps(r) + "\n" for r in rows))
    letters = tmp_path / "letters.jsonl"
    letters.write_text(
        "\n".join(_lines(LETTERS_FILE, lambda o: o["label"] in ("A", "#", "O"), 30)) + "\n"
    )
    result = run_convert("evaluate", "--no-mnist", "--strokes", str(digits), str(letters), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    d, x = report["strokes"][str(digits)], report["strokes"][str(letters)]
    for r in (d, x):
        assert {"count", "accuracy", "rejected", "per_label", "ece", "ece_prefix"} <= set(r)
    assert d["count"] == 60 and 0.9 <= d["accuracy"] <= 1 and 0 <= d["rejected"] <= 0.05
    assert set(d["ece_prefix"]) == {"0.25", "0.5", "0.75"}
    assert all(0 <= v <= 1 for v in [d["ece"], *d["ece_prefix"].values(), d["ece_live"]])
    # the live ECE pools the four moments, each with every digit once: by the triangle
    # inequality in each bin it is at most the mean of their four ECEs
    assert d["ece_live"] <= (d["ece"] + sum(d["ece_prefix"].values())) / 4 + 1e-9
    assert sum(v["count"] for v in d["per_label"].values()) == 60
    assert all(set(v) == {"count", "accuracy", "rejected"} for v in d["per_label"].values())
    assert d["per_source"]["zzz"]["count"] == 60
    assert x["count"] == 30 and x["accuracy"] is None and x["ece"] is None
    assert x["ece_prefix"] == {"0.25": None, "0.5": None, "0.75": None}
    assert x["ece_live"] is None
    assert set(x["per_label"]) <= {"A", "#", "O"} and x["per_label"]["A"]["accuracy"] is None
    assert x["per_label"]["A"]["rejected"] >= 0.8  # A and # look like no digit
    assert x["groups"]["lookalike"]["count"] == x["per_label"].get("O", {}).get("count", 0)
    assert "mnist_accuracy" not in report  # --no-mnist


def test_evaluate_refuses_bad_thresholds(tmp_path: Path) -> None:
    result = run_convert("evaluate", "--no-mnist", "--reject-at", "2", "--json")
    assert result.returncode == 2 and "thresholds" in result.stderr


def test_evaluate_reports_a_bad_model_clearly(tmp_path: Path) -> None:
    result = run_convert("evaluate", "--model", str(tmp_path / "missing.tflite"), "--json")
    assert result.returncode == 2 and "cannot read model" in result.stderr


def test_prefix_keeps_the_first_points_in_drawing_order() -> None:
    ink = [np.arange(8.0).reshape(4, 2), np.arange(12.0).reshape(6, 2)]
    assert [len(s) for s in prefix(ink, 0.5)] == [4, 1]
    assert [len(s) for s in prefix(ink, 0.25)] == [3]
    assert [len(s) for s in prefix(ink, 0.01)] == [1]  # never no ink at all
    assert [len(s) for s in prefix(ink, 1.0)] == [4, 6]


def test_ink_prefix_cuts_where_that_share_of_the_ink_length_was_drawn() -> None:
    # Two strokes: 10 units of ink (2 points), then 20 units (3 points).
    ink = [np.array([[0.0, 0.0], [0.0, 10.0]]), np.array([[5.0, 0.0], [5.0, 10.0], [15.0, 10.0]])]
    assert [s.tolist() for s in prefix_by_ink(ink, 0.25)] == [[[0, 0], [0, 7.5]]]
    half = prefix_by_ink(ink, 0.5)  # all of the first stroke, half of the second's first segment
    assert [s.tolist() for s in half] == [[[0, 0], [0, 10]], [[5, 0], [5, 5]]]
    assert [len(s) for s in prefix_by_ink(ink, 1.0)] == [2, 3]
    assert [len(s) for s in prefix_by_ink(ink, 0.0)] == [1]  # never no ink at all
    dot = [np.array([[3.0, 3.0]])]  # no length at all: cut by points
    assert [len(s) for s in prefix_by_ink(dot, 0.5)] == [1]


def test_distortions_keep_every_point_finite_and_drawable() -> None:
    rng = np.random.default_rng(0)
    ink = as_arrays(next(s for s in load_strokes(UNIPEN_FILE) if len(s.strokes) > 1).strokes)
    drawings = [distort(ink, rng) for _ in range(50)] + [scribble(rng) for _ in range(20)]
    assert all(np.isfinite(np.concatenate(d)).all() for d in drawings)
    images = to_uint8(drawings)
    assert images.shape == (70, 28, 28) and (images.reshape(70, -1).max(axis=1) > 0).all()


def test_restyle_writes_a_slashed_zero_and_continental_one_and_seven() -> None:
    rng = np.random.default_rng(3)
    t = np.linspace(0, 2 * np.pi, 40)
    zero = [np.stack([10 + 6 * np.sin(t), 20 - 10 * np.cos(t)], axis=1)]  # y grows downwards
    slashed = restyle(zero, 0, rng)
    assert len(slashed) == 2 and slashed[0] is zero[0]
    slash = slashed[1]
    rising = slash[-1] - slash[0]  # bottom left to top right, or back
    assert rising[0] * rising[1] < 0 and abs(rising[1]) > 10  # across the oval's height

    stem = np.stack([np.full(20, 5.0), np.linspace(0, 30, 20)], axis=1)  # drawn top down
    (flagged,) = restyle([stem], 1, rng)
    assert len(flagged) > len(stem) and np.array_equal(flagged[-len(stem) :], stem)
    assert flagged[0][0] < 5 and 0 < flagged[0][1] < 30  # starts low on the left
    (upwards,) = restyle([stem[::-1]], 1, rng)
    assert np.array_equal(upwards, stem[::-1])  # a 1 drawn bottom up keeps its shape

    seven = [np.array([[0.0, 0.0], [20.0, 0.0], [8.0, 40.0]])]
    crossed = restyle(seven, 7, rng)
    bar = crossed[1]
    assert len(crossed) == 2 and 12 <= bar[:, 1].mean() <= 28  # halfway down
    assert bar[:, 0].min() < 14 < bar[:, 0].max()  # across the stem (x 14 at mid-height)

    two = [np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])]
    assert restyle(two, 2, rng) is two


def test_ece() -> None:
    confidence = np.array([0.9] * 10 + [0.6] * 10)
    correct = np.array([1] * 9 + [0] + [1] * 6 + [0] * 4, bool)
    assert ece(confidence, correct) == pytest.approx(0.0)  # 90% right at 0.9, 60% at 0.6
    assert ece(np.full(10, 0.95), np.zeros(10, bool)) == pytest.approx(0.95)


def test_temperature_fit_recovers_the_temperature_that_made_the_labels() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 4, (4000, 11))
    p = np.exp(logits[:, :10] / 2.5)
    p /= p.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(10, p=row) for row in p])
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.1)


def test_label_groups_follow_the_look_alike_table() -> None:
    assert [group(c) for c in "OlZSbBgq"] == ["lookalike"] * 8
    assert [group(c) for c in "uJ/?y"] == ["similar"] * 5
    assert [group(c) for c in "AEFHKMNRWXkmnwx#%@*+"] == ["reject"] * 20


def test_letters_files_carry_the_character_and_no_digit_label() -> None:
    sample = next(s for s in iter_strokes(LETTERS_FILE) if not isinstance(s, DataError))
    assert sample.label is None and sample.char is not None and sample.name == sample.char


def _fold(source: str, digits: int, accuracy: float) -> dict[str, Any]:
    prefix_ece = {"0.25": 0.1, "0.5": 0.05, "0.75": 0.02}
    groups = {"reject": {"count": 10, "rejected": 0.9}, "lookalike": {"count": 4, "rejected": 0}}
    return {
        "holdout": source,
        "mnist": {"accuracy": 0.996, "rejected": 0.001},
        "digits": {
            "count": digits, "accuracy": accuracy, "rejected": 0.01, "ece": 0.02,
            "ece_prefix": prefix_ece,
        },
        "letters": {"groups": groups},
    }  # fmt: skip


def test_loso_table_means_per_source_and_pooled_and_names_small_sources() -> None:
    t = loso_table([_fold("big", 900, 0.99), _fold("mid", 100, 0.95), _fold("tiny", 10, 0.5)])
    assert t["mean_per_source"]["accuracy"] == pytest.approx((0.99 + 0.95 + 0.5) / 3)
    assert t["mean_per_source_with_100_or_more_digits"]["accuracy"] == pytest.approx(0.97)
    assert t["pooled"]["accuracy"] == pytest.approx((891 + 95 + 5) / 1010)
    assert t["pooled"]["digits"] == 1010 and t["small_sources"] == ["tiny"]
    assert t["worst_source"]["source"] == "mid"  # tiny is too small to be the worst
    assert t["letters_pooled"]["reject"] == {"count": 30, "rejected": pytest.approx(0.9)}
    assert t["recipe"] == "frozen" and t["per_source"]["big"]["epochs"] is None  # not recorded
