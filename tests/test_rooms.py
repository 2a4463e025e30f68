"""server/rooms.py: the shared-session and resume registries, with literal inputs and a
clock passed in. Every step checks the state it leaves, and every refusal checks that the
state did not change."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from server.rooms import (
    TABLE,
    Cleared,
    Joined,
    Left,
    Op,
    Pen,
    Resumes,
    Role,
    RoomCode,
    RoomError,
    Rooms,
    RoomSettings,
    Share,
    Stroke,
    StrokeEnded,
    StrokePoints,
    StrokeStarted,
    Undone,
)

A, B = ((0.0, 0.0), (1.0, 1.0)), ((5.0, 5.0), (6.0, 6.0), (7.0, 7.0))


def state(rooms: Rooms) -> Any:
    """Everything a registry holds, for before/after comparisons."""
    return copy.deepcopy((rooms._rooms, rooms._room_of))


def refused(rooms: Rooms, code: RoomCode, call: Any, *args: Any) -> None:
    """`call(*args)` raises `code` and changes nothing."""
    before = state(rooms)
    with pytest.raises(RoomError) as exc:
        call(*args)
    assert exc.value.code is code
    assert state(rooms) == before


def shared(settings: RoomSettings | None = None) -> tuple[Rooms, Share]:
    rooms = Rooms(settings)
    return rooms, rooms.create("owner", now=0.0)


# ---- creating and joining ---------------------------------------------------------------------


def test_create_makes_a_room_with_the_owner_drawing_and_unguessable_tokens() -> None:
    rooms = Rooms()
    share = rooms.create("owner", now=0.0, strokes=[A])
    assert share.room in rooms and len(rooms) == 1
    assert rooms.members(share.room) == {"owner": Role.DRAW}
    assert rooms.room_of("owner") == share.room
    assert rooms.strokes(share.room) == (Stroke(1, "owner", A, False),)
    assert len(share.draw_token) >= 32 and len(share.watch_token) >= 32
    assert len({share.room, share.draw_token, share.watch_token}) == 3
    other = rooms.create("someone", now=0.0)
    assert {other.room, other.draw_token, other.watch_token}.isdisjoint(
        {share.room, share.draw_token, share.watch_token}
    )


def test_join_gives_the_role_of_the_token() -> None:
    rooms, share = shared()
    assert rooms.join(share.room, share.watch_token, "w", now=1.0) == Joined(
        share.room, "w", Role.WATCH
    )
    assert rooms.join(share.room, share.draw_token, "d", now=1.0).role is Role.DRAW
    assert rooms.members(share.room) == {"owner": Role.DRAW, "w": Role.WATCH, "d": Role.DRAW}
    assert rooms.room_of("w") == rooms.room_of("d") == share.room


def test_unknown_room_and_wrong_token_are_the_same_refusal() -> None:
    rooms, share = shared()
    other = rooms.create("other-owner", now=0.0)
    attempts = [
        ("no-such-room", share.draw_token),
        (share.room, "wrong"),
        (share.room, ""),
        (share.room, other.draw_token),  # a real token of another room
        (share.room, share.draw_token[:-1]),
        (share.room, "ünïcode"),
    ]
    messages = set()
    for room_id, token in attempts:
        before = state(rooms)
        with pytest.raises(RoomError) as exc:
            rooms.join(room_id, token, "x", now=1.0)
        assert exc.value.code is RoomCode.REFUSED and state(rooms) == before
        messages.add(exc.value.message)
    assert len(messages) == 1  # nothing tells an unknown room from a wrong token


def test_a_member_is_in_one_room_at_a_time() -> None:
    rooms, share = shared()
    refused(rooms, RoomCode.ALREADY_IN_ROOM, rooms.join, share.room, share.draw_token, "owner", 1)
    refused(rooms, RoomCode.ALREADY_IN_ROOM, rooms.create, "owner", 1.0)
    refused(rooms, RoomCode.NOT_IN_ROOM, rooms.leave, "stranger", 1.0)
    refused(rooms, RoomCode.NOT_IN_ROOM, rooms.start, "stranger", A)


def test_members_per_room_are_limited() -> None:
    rooms, share = shared(RoomSettings(max_members=2))
    rooms.join(share.room, share.watch_token, "w", now=1.0)
    refused(rooms, RoomCode.ROOM_FULL, rooms.join, share.room, share.draw_token, "x", 1.0)
    rooms.leave("w", now=2.0)
    assert rooms.join(share.room, share.draw_token, "x", now=3.0).role is Role.DRAW


def test_rooms_per_server_are_limited_and_expired_ones_do_not_count() -> None:
    rooms = Rooms(RoomSettings(max_rooms=2, empty_ttl_s=10.0))
    rooms.create("a", now=0.0)
    rooms.create("b", now=0.0)
    refused(rooms, RoomCode.TOO_MANY_ROOMS, rooms.create, "c", 5.0)
    rooms.leave("a", now=5.0)
    refused(rooms, RoomCode.TOO_MANY_ROOMS, rooms.create, "c", 14.0)  # empty, not yet expired
    assert rooms.create("c", now=15.0).room in rooms  # a's room expired at 15


def test_rooms_per_origin_are_limited_while_alive() -> None:
    rooms = Rooms(RoomSettings(max_rooms_per_origin=2, empty_ttl_s=10.0))
    rooms.create("a", 0.0, origin="10.0.0.1")
    rooms.create("b", 0.0, origin="10.0.0.1")
    refused(rooms, RoomCode.TOO_MANY_ROOMS, rooms.create, "c", 1.0, (), "10.0.0.1")
    assert rooms.create("c", 1.0, origin="10.0.0.2").room in rooms  # another address
    assert rooms.create("d", 1.0).room in rooms  # no origin given: no quota
    rooms.leave("a", now=1.0)
    assert rooms.create("e", 11.0, origin="10.0.0.1").room in rooms  # a's room expired


# ---- presence and expiry ----------------------------------------------------------------------


def test_leaving_is_announced_and_the_last_one_out_starts_the_expiry_clock() -> None:
    rooms, share = shared(RoomSettings(empty_ttl_s=10.0))
    rooms.join(share.room, share.watch_token, "w", now=1.0)
    assert rooms.leave("owner", now=2.0) == [Left(share.room, "owner")]
    assert rooms.members(share.room) == {"w": Role.WATCH} and rooms.room_of("owner") is None
    assert rooms.expire(now=100.0) == []  # not empty: never expires
    assert rooms.leave("w", now=100.0) == [Left(share.room, "w")]
    assert rooms.members(share.room) == {}
    assert rooms.expire(now=109.9) == [] and share.room in rooms
    assert rooms.join(share.room, share.draw_token, "back", now=105.0).role is Role.DRAW
    rooms.leave("back", now=106.0)
    assert rooms.expire(now=115.9) == []  # the clock restarted at 106
    assert rooms.expire(now=116.0) == [share.room]
    assert share.room not in rooms and len(rooms) == 0


def test_an_expired_room_refuses_even_before_it_is_swept() -> None:
    rooms, share = shared(RoomSettings(empty_ttl_s=10.0))
    rooms.leave("owner", now=0.0)
    refused(rooms, RoomCode.REFUSED, rooms.join, share.room, share.draw_token, "late", 10.0)
    assert rooms.expire(now=10.0) == [share.room]
    refused(rooms, RoomCode.REFUSED, rooms.join, share.room, share.draw_token, "late", 11.0)


def test_leaving_mid_stroke_keeps_the_ink_drawn() -> None:
    rooms, share = shared()
    rooms.start("owner", A)
    events = rooms.leave("owner", now=1.0)
    assert events == [StrokeEnded(share.room, 1, "owner"), Left(share.room, "owner")]
    assert rooms.strokes(share.room) == (Stroke(1, "owner", A, False),)


# ---- the shared canvas ------------------------------------------------------------------------


def test_strokes_from_several_drawers_keep_their_authors_and_order() -> None:
    rooms, share = shared()
    rooms.join(share.room, share.draw_token, "d", now=0.0)
    r = share.room
    assert rooms.start("owner", A[:1]) == [StrokeStarted(r, Stroke(1, "owner", A[:1], True))]
    assert rooms.start("d", B[:1]) == [StrokeStarted(r, Stroke(2, "d", B[:1], True))]
    assert rooms.extend("owner", A[1:]) == [StrokePoints(r, 1, "owner", A[1:])]
    assert rooms.end("d", B[1:]) == [StrokePoints(r, 2, "d", B[1:]), StrokeEnded(r, 2, "d")]
    assert rooms.strokes(r) == (Stroke(1, "owner", A, True), Stroke(2, "d", B, False))
    assert rooms.ink(r) == (A, B)
    # a new start ends the open stroke first
    assert rooms.start("owner", B) == [
        StrokeEnded(r, 1, "owner"),
        StrokeStarted(r, Stroke(3, "owner", B, True)),
    ]
    assert [s.open for s in rooms.strokes(r)] == [False, False, True]


def test_points_and_end_need_an_open_stroke() -> None:
    rooms, _ = shared()
    refused(rooms, RoomCode.NO_STROKE, rooms.extend, "owner", A)
    refused(rooms, RoomCode.NO_STROKE, rooms.end, "owner")
    rooms.start("owner")
    rooms.end("owner")
    refused(rooms, RoomCode.NO_STROKE, rooms.end, "owner")


def test_watchers_cannot_draw_undo_or_clear() -> None:
    rooms, share = shared()
    rooms.start("owner", A)
    rooms.join(share.room, share.watch_token, "w", now=0.0)
    for call, args in [
        (rooms.start, ("w", B)),
        (rooms.extend, ("w", B)),
        (rooms.end, ("w",)),
        (rooms.undo, ("w",)),
        (rooms.clear, ("w",)),
    ]:
        refused(rooms, RoomCode.WATCH_ONLY, call, *args)
    assert rooms.ink(share.room) == (A,)


def test_undo_removes_only_your_own_last_stroke() -> None:
    rooms, share = shared()
    r = share.room
    rooms.join(r, share.draw_token, "d", now=0.0)
    rooms.start("owner", A)
    rooms.end("owner")
    rooms.start("d", B)
    rooms.end("d")
    rooms.start("owner", B)  # open
    assert rooms.undo("owner") == [Undone(r, 3, "owner")]  # the open one first
    assert [s.id for s in rooms.strokes(r)] == [1, 2]
    assert rooms.undo("owner") == [Undone(r, 1, "owner")]  # d's newer stroke stays
    assert rooms.strokes(r) == (Stroke(2, "d", B, False),)
    before = state(rooms)
    assert rooms.undo("owner") == [] and state(rooms) == before  # nothing of owner's left
    refused(rooms, RoomCode.NO_STROKE, rooms.extend, "owner", A)  # the undone stroke is closed


def test_clear_removes_everyones_ink_and_open_strokes_continue_empty() -> None:
    rooms, share = shared()
    r = share.room
    rooms.join(r, share.draw_token, "d", now=0.0)
    rooms.start("owner", A)
    rooms.end("owner")
    rooms.start("d", B)  # d is mid-stroke
    rooms.start("owner", A)  # so is owner, who clears
    assert rooms.clear("owner") == [Cleared(r, "owner")]
    assert rooms.strokes(r) == (Stroke(2, "d", (), True),) and rooms.ink(r) == ()
    assert rooms.extend("d", A) == [StrokePoints(r, 2, "d", A)]  # d carries on
    refused(rooms, RoomCode.NO_STROKE, rooms.extend, "owner", A)  # owner's stroke is gone
    assert rooms.ink(r) == (A,)


def test_ink_limits_are_per_room_and_refusals_change_nothing() -> None:
    rooms, share = shared(RoomSettings(max_strokes=2, max_points=5))
    rooms.join(share.room, share.draw_token, "d", now=0.0)
    rooms.start("owner", A)  # 2 points
    rooms.start("d", B)  # 5 points, 2 strokes
    refused(rooms, RoomCode.TOO_MANY_POINTS, rooms.extend, "d", A[:1])
    refused(rooms, RoomCode.TOO_MANY_POINTS, rooms.end, "owner", A[:1])
    refused(rooms, RoomCode.TOO_MANY_STROKES, rooms.start, "owner")
    rooms.undo("d")
    assert rooms.start("owner", B)[-1] == StrokeStarted(share.room, Stroke(3, "owner", B, True))
    small = Rooms(RoomSettings(max_strokes=1))
    refused(small, RoomCode.TOO_MANY_STROKES, small.create, "owner", 0.0, [A, B])


def test_the_table_allows_drawers_only() -> None:
    assert {role for role, _, _ in TABLE} == {Role.DRAW}
    assert (Role.DRAW, Pen.UP, Op.POINTS) not in TABLE
    assert TABLE[(Role.DRAW, Pen.DOWN, Op.CLEAR)] is Pen.UP


# ---- resumable sessions -----------------------------------------------------------------------


def test_resume_within_the_grace_period_gives_the_same_session_once() -> None:
    parked: Resumes[dict[str, int]] = Resumes(grace_s=60.0)
    session = {"strokes": 3}
    token = parked.park(session, now=100.0)
    assert len(token) >= 32 and len(parked) == 1
    assert parked.resume(token, now=159.9) is session
    assert len(parked) == 0
    with pytest.raises(RoomError) as exc:
        parked.resume(token, now=160.0)
    assert exc.value.code is RoomCode.RESUME_UNKNOWN


def test_resume_after_the_grace_period_is_expired_not_unknown() -> None:
    parked: Resumes[str] = Resumes(grace_s=60.0, remember_s=600.0)
    token = parked.park("s1", now=0.0, token="welcome-token")
    assert token == "welcome-token"
    for now in (60.0, 61.0):  # before and after the sweep
        with pytest.raises(RoomError) as exc:
            parked.resume(token, now=now)
        assert exc.value.code is RoomCode.RESUME_EXPIRED
        assert parked.expire(now) == (["s1"] if now == 60.0 else [])
    assert len(parked) == 0
    parked.expire(now=660.0)  # forgotten after remember_s
    with pytest.raises(RoomError) as exc:
        parked.resume(token, now=661.0)
    assert exc.value.code is RoomCode.RESUME_UNKNOWN


def test_expire_releases_only_sessions_past_their_grace() -> None:
    parked: Resumes[str] = Resumes(grace_s=10.0)
    t1 = parked.park("early", now=0.0)
    t2 = parked.park("late", now=5.0)
    assert parked.expire(now=9.0) == []
    assert parked.expire(now=10.0) == ["early"]
    assert parked.resume(t2, now=14.0) == "late"
    with pytest.raises(RoomError, match="expired"):
        parked.resume(t1, now=14.0)


def test_parking_is_limited_and_unknown_tokens_are_refused() -> None:
    parked: Resumes[str] = Resumes(max_parked=1)
    token = parked.park("a", now=0.0)
    with pytest.raises(RoomError) as exc:
        parked.park("b", now=0.0)
    assert exc.value.code is RoomCode.TOO_MANY_PARKED and len(parked) == 1
    assert parked.park("a again", now=1.0, token=token) == token  # re-parking is not new
    with pytest.raises(RoomError) as exc:
        parked.resume("guess", now=1.0)
    assert exc.value.code is RoomCode.RESUME_UNKNOWN
    assert parked.resume(token, now=1.0) == "a again"
