"""server/canvas.py: the drawing core with literal inputs. Every step checks the state it
leaves, and every refusal checks that nothing changed."""

from __future__ import annotations

import copy

import pytest

from protocol import (
    Clear,
    Cleared,
    Code,
    End,
    Ink,
    Joined,
    Member,
    PointsMsg,
    Presence,
    ProtocolError,
    RoomStroke,
    Start,
    StrokeEvent,
    Undo,
    Undone,
)
from server.canvas import TABLE, Canvas, InkLimits, Pen, Role

A, B = ((0, 0), (1, 1)), ((5.5, 5.0), (6.0, 6.0), (7.0, 7.0))
R = "room1"


def room(*members: tuple[str, Role], limits: InkLimits | None = None) -> Canvas:
    canvas = Canvas(limits or InkLimits(), room=R)
    for member, role in members:
        canvas.add(member, role)
    return canvas


def refused(canvas: Canvas, code: Code, member: str, msg: Ink) -> None:
    """Applying `msg` raises `code`, naming its seq, and changes nothing."""
    before = copy.deepcopy(canvas)
    with pytest.raises(ProtocolError) as info:
        canvas.apply(member, msg)
    assert (info.value.code, info.value.seq) == (code, msg.seq)
    assert canvas == before


def test_a_solo_drawing_step_by_step() -> None:
    solo = Canvas()
    assert solo.add("me", Role.DRAW) == []  # a solo canvas tells nobody anything
    assert solo.apply("me", Start(A[:1], seq=1)) == []
    assert solo.members["me"].pen is Pen.DOWN and solo.members["me"].seq == 1
    solo.apply("me", PointsMsg(A[1:], seq=2))
    solo.apply("me", End(seq=3))
    assert solo.strokes == [RoomStroke(1, "me", A, False)] and solo.points == 2
    snap = solo.snapshot()
    assert (snap.ink, snap.seqs, snap.version, snap.final) == ((A,), {"me": 3}, 3, False)
    solo.apply("me", Start(B, seq=4))
    assert snap.ink == (A,)  # a snapshot never changes with the canvas
    assert solo.snapshot(final=True, asker="me").ink == (A, B)


def test_ink_is_kept_as_the_wire_gave_it() -> None:
    solo = Canvas()
    solo.add("me", Role.DRAW)
    solo.apply("me", Start(((1, 2, 300),)))
    assert [type(v) for v in solo.snapshot().ink[0][0]] == [int, int, int]


def test_several_drawers_keep_their_authors_and_order() -> None:
    canvas = room(("a", Role.DRAW), ("d", Role.DRAW))
    assert canvas.apply("a", Start(A[:1])) == [StrokeEvent(R, "start", 1, "a", A[:1])]
    assert canvas.apply("d", Start(B[:1])) == [StrokeEvent(R, "start", 2, "d", B[:1])]
    assert canvas.apply("a", PointsMsg(A[1:])) == [StrokeEvent(R, "points", 1, "a", A[1:])]
    assert canvas.apply("d", End(B[1:])) == [
        StrokeEvent(R, "points", 2, "d", B[1:]),
        StrokeEvent(R, "end", 2, "d"),
    ]
    assert canvas.strokes == [RoomStroke(1, "a", A, True), RoomStroke(2, "d", B, False)]
    assert canvas.snapshot().ink == (A, B)
    assert canvas.apply("a", Start(B)) == [  # a new start ends the open stroke first
        StrokeEvent(R, "end", 1, "a"),
        StrokeEvent(R, "start", 3, "a", B),
    ]
    assert [s.open for s in canvas.strokes] == [False, False, True]


def test_points_and_end_need_an_open_stroke_and_an_empty_stroke_is_dropped() -> None:
    canvas = room(("a", Role.DRAW))
    refused(canvas, Code.NO_STROKE, "a", PointsMsg(A, seq=7))
    refused(canvas, Code.NO_STROKE, "a", End(seq=8))
    canvas.apply("a", Start())
    canvas.apply("a", End())
    assert canvas.strokes == [] and canvas.inked == 0
    refused(canvas, Code.NO_STROKE, "a", End(seq=9))


def test_watchers_cannot_draw_undo_or_clear() -> None:
    canvas = room(("a", Role.DRAW), ("w", Role.WATCH))
    canvas.apply("a", Start(A))
    for msg in (Start(B, seq=1), PointsMsg(B), End(), Undo(), Clear(seq=5)):
        refused(canvas, Code.WATCH_ONLY, "w", msg)
    assert canvas.snapshot().ink == (A,)


def test_undo_removes_only_your_own_open_else_last_stroke() -> None:
    canvas = room(("a", Role.DRAW), ("d", Role.DRAW))
    canvas.apply("a", Start(A))
    canvas.apply("a", End())
    canvas.apply("d", Start(B))
    canvas.apply("d", End())
    canvas.apply("a", Start(B))  # open
    assert canvas.apply("a", Undo()) == [Undone(R, 3, "a")]  # the open one first
    assert [s.id for s in canvas.strokes] == [1, 2]
    assert canvas.apply("a", Undo()) == [Undone(R, 1, "a")]  # d's newer stroke stays
    assert canvas.strokes == [RoomStroke(2, "d", B, False)] and canvas.points == 3
    version = canvas.version
    assert canvas.apply("a", Undo(seq=4)) == []  # nothing of a's left: nothing changes
    assert canvas.strokes == [RoomStroke(2, "d", B, False)]
    assert canvas.version == version + 1 and canvas.members["a"].seq == 4  # but it is seen
    refused(canvas, Code.NO_STROKE, "a", PointsMsg(A))  # the undone stroke is closed


def test_clear_removes_everyones_ink_and_others_open_strokes_continue_empty() -> None:
    canvas = room(("a", Role.DRAW), ("d", Role.DRAW))
    canvas.apply("a", Start(A))
    canvas.apply("a", End())
    canvas.apply("d", Start(B))  # d is mid-stroke
    canvas.apply("a", Start(A))  # so is a, who clears
    assert canvas.apply("a", Clear()) == [Cleared(R, "a")]
    assert canvas.strokes == [RoomStroke(2, "d", (), True)] and canvas.snapshot().ink == ()
    assert canvas.apply("d", PointsMsg(A)) == [StrokeEvent(R, "points", 2, "d", A)]
    refused(canvas, Code.NO_STROKE, "a", PointsMsg(A))  # a's own open stroke ended
    assert canvas.snapshot().ink == (A,) and canvas.points == 2


def test_ink_limits_hold_for_the_whole_canvas_and_refusals_change_nothing() -> None:
    canvas = room(("a", Role.DRAW), ("d", Role.DRAW), limits=InkLimits(2, 5))
    canvas.apply("a", Start(A))  # 2 points
    canvas.apply("d", Start(B))  # 5 points, 2 strokes
    refused(canvas, Code.TOO_MANY_POINTS, "d", PointsMsg(A[:1], seq=1))
    refused(canvas, Code.TOO_MANY_POINTS, "a", End(A[:1]))
    refused(canvas, Code.TOO_MANY_STROKES, "a", Start(seq=3))
    canvas.apply("d", Undo())
    assert canvas.apply("a", Start(B))[-1] == StrokeEvent(R, "start", 3, "a", B)


def test_members_come_and_go_with_presence_and_the_room_is_limited() -> None:
    canvas = room(("a", Role.DRAW), limits=InkLimits(max_members=2))
    assert canvas.add("w", Role.WATCH, seq=4) == [Presence(R, "joined", "w", "watch")]
    with pytest.raises(ProtocolError) as info:
        canvas.add("x", Role.DRAW)
    assert info.value.code is Code.ROOM_FULL and list(canvas.members) == ["a", "w"]
    assert canvas.state("w", 4) == Joined(
        R, "watch", "w", (Member("a", "draw"), Member("w", "watch")), (), 4
    )
    canvas.apply("a", Start(A))
    assert canvas.remove("a") == [  # leaving mid-stroke keeps the ink drawn
        StrokeEvent(R, "end", 1, "a"),
        Presence(R, "left", "a", "draw"),
    ]
    assert canvas.strokes == [RoomStroke(1, "a", A, False)] and list(canvas.members) == ["w"]


def test_a_copy_for_one_member_finishes_every_stroke_as_its_own() -> None:
    canvas = room(("a", Role.DRAW), ("d", Role.DRAW))
    canvas.apply("a", Start(A))
    canvas.apply("d", Start(B))
    solo = canvas.copy_for("a", seq=9)
    assert solo.room is None and solo.members["a"].seq == 9
    assert solo.strokes == [RoomStroke(1, "a", A, False), RoomStroke(2, "a", B, False)]
    assert solo.points == 5 and canvas.strokes[0].open  # the room is untouched


def test_the_table_allows_drawers_only() -> None:
    assert {role for role, _, _ in TABLE} == {Role.DRAW}
    assert (Role.DRAW, Pen.UP, PointsMsg) not in TABLE
    assert TABLE[(Role.DRAW, Pen.DOWN, Clear)] is Pen.UP
