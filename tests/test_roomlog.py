"""server/roomlog.py: a room's operations survive their bytes, and replaying a log gives
the canvas that applying the operations one by one gave (what every process relies on); an
answer published by a room's predictor gives every member the prediction it would have
been sent by the process that made it."""

from __future__ import annotations

import numpy as np
import pytest

from protocol import Clear, Code, End, Guess, PointsMsg, ProtocolError, Start, Undo
from server import roomlog
from server.canvas import Canvas, InkLimits, Role
from server.recognizer import Answer
from server.roomlog import Op

LIMITS = InkLimits(max_strokes=3, max_points=50, max_members=3)


def seeded() -> tuple[Canvas, bytes]:
    canvas = Canvas(LIMITS)
    canvas.add("a", Role.DRAW, 4)
    canvas.apply("a", Start(((1, 2), (3.5, 4.25, 99)), 5))
    canvas.apply("a", End((), 6))
    canvas.room = "R"
    return canvas, roomlog.dump(Op(roomlog.SEED, "a", seed=roomlog.seed_of(canvas)))


OPS = [
    Op(roomlog.JOIN, "b", "draw", 1, nonce="p:1"),
    Op(roomlog.JOIN, "w", "watch", 2),
    Op(roomlog.INK, "b", ink=Start(((10, 10),), 3)),
    Op(roomlog.INK, "w", ink=Start(((0, 0),), 1)),  # a watcher: refused everywhere
    Op(roomlog.INK, "b", ink=PointsMsg(((11, 12), (13, 14)), 4)),
    Op(roomlog.INK, "a", ink=Start(((20, 20),), 7)),
    Op(roomlog.LIFT, "b"),
    Op(roomlog.INK, "a", ink=Start(((30, 30),), 8)),  # a fourth stroke: refused everywhere
    Op(roomlog.INK, "a", ink=Undo(9)),
    Op(roomlog.LEAVE, "w", seq=None),
    Op(roomlog.LEAVE, "w"),  # gone already: nothing
    Op(roomlog.INK, "b", ink=Clear(5)),
]


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.kind)
def test_every_op_survives_its_bytes(op: Op) -> None:
    assert roomlog.load(roomlog.dump(op)) == op


def test_a_seed_is_the_canvas_it_was_made_of() -> None:
    canvas, seed = seeded()
    again = roomlog.replay("R", [("1-0", seed)], LIMITS)
    assert again == canvas
    assert again.strokes[0].points == ((1, 2), (3.5, 4.25, 99))  # ints stay ints


def test_replaying_a_log_gives_the_canvas_that_applying_it_gave() -> None:
    canvas, seed = seeded()
    refused = []
    for op in OPS:
        try:
            roomlog.apply(canvas, op)
        except ProtocolError as exc:
            refused.append(exc.code)
    assert refused == [Code.WATCH_ONLY, Code.TOO_MANY_STROKES]
    log = [(f"{i + 1}-0", data) for i, data in enumerate([seed, *map(roomlog.dump, OPS)])]
    replayed = roomlog.replay("R", log, LIMITS)
    assert replayed == canvas
    assert set(replayed.members) == {"a", "b"} and replayed.points == 0


@pytest.mark.parametrize("upto", range(1, len(OPS) + 1))
def test_a_compacted_log_replays_to_the_same_canvas(upto: int) -> None:
    """A seed of the canvas as of entry `upto`, appended after more entries came, and the
    log trimmed up to `upto`: replaying what is left gives the same canvas."""
    _, seed = seeded()
    log = [(f"{i + 1}-0", data) for i, data in enumerate([seed, *map(roomlog.dump, OPS)])]
    at_upto = roomlog.replay("R", log[: upto + 1], LIMITS)
    lands = max(upto + 1, len(log) - 1)  # after more entries came, if any did
    compact = (log[lands - 1][0].replace("-0", "-1"), roomlog.compacted(at_upto, log[upto][0]))
    trimmed = [*log[upto + 1 : lands], compact, *log[lands:]]
    assert roomlog.replay("R", trimmed, LIMITS) == roomlog.replay("R", log, LIMITS)


def test_ink_of_someone_no_longer_in_the_room_is_refused() -> None:
    canvas, _ = seeded()
    with pytest.raises(ProtocolError) as info:
        roomlog.apply(canvas, Op(roomlog.INK, "gone", ink=Start(((1, 1),), 3)))
    assert info.value.code is Code.NOT_IN_ROOM and info.value.seq == 3


def test_an_answer_survives_its_bytes_for_every_member() -> None:
    canvas, _ = seeded()
    canvas.add("b", Role.WATCH, 11)
    image = np.linspace(0, 1, 28 * 28, dtype=np.float32).reshape(28, 28)
    top = tuple(Guess(d, round(0.1 - d / 1000, 6)) for d in range(10))
    for snap in (canvas.snapshot(), canvas.snapshot(final=True, asker="b")):
        for answer in (Answer(snap, top, (1, 2.5, 3.5, 4), image, "digit"), Answer(snap)):
            process, back = roomlog.load_answer(roomlog.dump_answer(answer, "p1"))
            assert process == "p1" and back.snapshot.version == snap.version
            for member, top_k, preview in (("a", 3, True), ("b", 10, False), ("x", 1, True)):
                want = answer.for_member(member, top_k, preview)
                assert back.for_member(member, top_k, preview) == want
