"""server/recognizer.py: the bounding box as the client's own numbers, each member's cut of
an answer, and the batch function on the real model."""

from __future__ import annotations

import numpy as np
import pytest

from protocol import Guess, Prediction
from server.canvas import Snapshot
from server.raster import as_strokes
from server.recognizer import (
    Answer,
    Recognizer,
    _checked,
    _Finished,
    bounds,
    bounds_batch,
    predict_ink,
    ranked,
    ranked_batch,
)
from tests.serverkit import bundled_model, unipen_digits


def test_bounds_are_the_clients_numbers_ints_included() -> None:
    ink = (((3, 4), (10, 40.5)), ((-2.5, 7, 99),))
    box = bounds(ink, as_strokes(ink))
    assert box == (-2.5, 4, 10, 40.5)
    assert [type(v) for v in box] == [float, int, int, float]


def test_bounds_of_a_batch_are_each_drawings_own() -> None:
    inks = [
        (((3, 4), (10, 40.5)), ((-2.5, 7, 99),)),
        (),
        (((1.5, 2), (1.5, 2.0), (0, 9)),),  # ties: the first point reaching the extreme
        *(tuple(tuple(map(tuple, s)) for s in d.strokes) for d in unipen_digits(3)),
    ]
    arrays = [as_strokes(ink) for ink in inks]
    boxes = bounds_batch(inks, arrays)
    assert boxes[0] == (-2.5, 4, 10, 40.5) and boxes[1] is None
    assert boxes[2] == (0, 2, 1.5, 9) and [type(v) for v in boxes[2]] == [int, int, float, int]
    for ink, got in zip(inks[3:], boxes[3:], strict=True):
        xs = [p[0] for s in ink for p in s]
        ys = [p[1] for s in ink for p in s]
        assert got == (min(xs), min(ys), max(xs), max(ys))


def test_ranked_lists_every_digit_most_probable_first() -> None:
    probs = np.array([0.05, 0.5, 0.05, 0.3, 0, 0, 0, 0.1, 0, 0], dtype=np.float32)
    top = ranked(probs)
    assert [g.digit for g in top[:4]] == [1, 3, 7, 0] and len(top) == 10
    flipped = probs[::-1].copy()
    assert ranked_batch(np.stack([probs, flipped])) == [top, ranked(flipped)]
    assert top[:2] == (Guess(1, 0.5), Guess(3, 0.3)) and type(top[:2]) is tuple  # rounded
    assert top[0] == Guess(1, 0.5) and tuple(top) == top and top != ranked(flipped)


def test_each_member_gets_its_seq_its_top_k_and_its_preview() -> None:
    snap = Snapshot((((0, 0), (1, 1)),), version=4, seqs={"a": 9, "w": None})
    image = np.zeros((28, 28), np.float32)
    image[0, 0] = 1.0
    top = tuple(Guess(d, 0.1) for d in range(10))
    answer = Answer(snap, top, (0, 0, 1, 1), image)
    a = answer.for_member("a", 2, preview=True)
    assert (a.seq, a.top, a.strokes, a.bbox) == (9, top[:2], 1, (0, 0, 1, 1))
    assert a.input is not None and a.input[0] == 255 and len(a.input) == 784
    assert answer.for_member("w", 3, preview=False) == Prediction(
        None, False, False, top[:3], (0, 0, 1, 1), 1
    )
    empty = Answer(Snapshot((), 5, {"a": 10}, final=True, asker="a"))
    assert empty.for_member("a", 3, True) == Prediction(10, True, True, strokes=0)


def test_points_with_and_without_t_may_mix_in_one_stroke() -> None:
    (outcome,) = predict_ink(bundled_model(), [(((0, 0), (0, 20, 5.0), (1, 40)),)])
    assert outcome.error is None and outcome.probs is not None and outcome.bbox == (0, 0, 1, 40)


def test_the_batch_function_reads_digits_and_keeps_bad_ink_to_itself() -> None:
    model, digits = bundled_model(), unipen_digits()[:3]
    batch = [tuple(tuple(map(tuple, s)) for s in d.strokes) for d in digits]
    outcomes = predict_ink(model, [*batch, ((), ((float("nan"), 0.0),))])
    assert [int(o.probs.argmax()) for o in outcomes[:3] if o.probs is not None] == [
        d.expected for d in digits
    ]
    assert outcomes[3].error is not None and outcomes[3].probs is None


@pytest.mark.asyncio
async def test_predict_answers_empty_ink_without_the_model_and_ink_with_it() -> None:
    recognizer = Recognizer(bundled_model())
    recognizer.start()
    try:
        digit = unipen_digits()[5]
        ink = tuple(tuple(map(tuple, s)) for s in digit.strokes)
        answer = await recognizer.predict(Snapshot(ink, 1, {"a": 1}))
        assert answer.top[0].digit == digit.expected and not answer.empty
        assert (await recognizer.predict(Snapshot((), 2, {}))).empty
        assert len(recognizer.batcher) == 0
    finally:
        await recognizer.stop()


def test_a_finished_stroke_is_converted_once_and_the_cache_is_bounded() -> None:
    cache = _Finished(size=2)
    stroke = ((0, 0), (1, 2))
    (first,) = cache.arrays(stroke)
    assert cache.arrays(stroke)[0] is first  # the same tuple: the same array
    assert cache.arrays(tuple(stroke))[0] is first  # (a tuple of a tuple is that tuple)
    other = ((0, 0), (1, 2.0))
    assert cache.arrays(other)[0] is not first and np.array_equal(cache.arrays(other)[0], first)
    cache.arrays(((5, 5),))
    assert len(cache._arrays) == 2 and cache.arrays(stroke)[0] is not first  # evicted, redone
    assert cache.arrays(()) == []  # an empty stroke is dropped, as as_strokes drops it


def test_ink_that_cannot_be_drawn_names_its_stroke_whether_finished_or_not() -> None:
    bad = ((0, 0), (float("inf"), 1))
    one = ((1, 1),)
    for ink, index in [((one, bad), 1), ((bad, one), 0), ((one, bad, one), 1)]:
        arrays, error = _checked(ink)
        assert arrays == [] and error == f"stroke {index}: coordinates must be finite"
