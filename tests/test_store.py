"""server/store.py: rooms and parked sessions with literal inputs and a clock passed in.
Every refusal checks that the store did not change."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from protocol import Code, ProtocolError, ResumeError
from server.store import Parked, ResumeFailed, Rooms


def refused(rooms: Rooms[str], code: Code, call: Callable[..., Any], *args: Any) -> str:
    before = copy.deepcopy(rooms._rooms)
    with pytest.raises(ProtocolError) as info:
        call(*args)
    assert info.value.code is code and rooms._rooms == before
    return info.value.message


def test_create_gives_a_room_with_unguessable_tokens() -> None:
    rooms: Rooms[str] = Rooms()
    room = rooms.create("drawing", now=0.0)
    assert room.id in rooms and len(rooms) == 1 and room.drawing == "drawing"
    assert len(room.draw_token) >= 32 and len(room.watch_token) >= 32
    assert len({room.id, room.draw_token, room.watch_token}) == 3
    other = rooms.create("other", now=0.0)
    assert {other.id, other.draw_token, other.watch_token}.isdisjoint(
        {room.id, room.draw_token, room.watch_token}
    )


def test_the_token_decides_the_role() -> None:
    rooms: Rooms[str] = Rooms()
    room = rooms.create("d", now=0.0)
    assert rooms.find(room.id, room.draw_token, 1.0) == (room, True)
    assert rooms.find(room.id, room.watch_token, 1.0) == (room, False)


def test_unknown_room_wrong_token_and_expired_room_are_one_refusal() -> None:
    rooms: Rooms[str] = Rooms(ttl_s=10.0)
    room, other = rooms.create("d", now=0.0), rooms.create("o", now=0.0)
    rooms.occupied(other.id, 0, now=0.0)
    attempts = [
        ("no-such-room", room.draw_token, 1.0),
        (room.id, "wrong", 1.0),
        (room.id, "", 1.0),
        (room.id, other.draw_token, 1.0),  # a real token of another room
        (room.id, room.draw_token[:-1], 1.0),
        (room.id, "ünïcode", 1.0),
        (other.id, other.draw_token, 10.0),  # empty for ttl_s: expired, not yet swept
    ]
    texts = {refused(rooms, Code.ROOM_REFUSED, rooms.find, *a) for a in attempts}
    assert len(texts) == 1  # nothing tells an unknown room from a wrong token


def test_rooms_per_server_are_limited_and_expired_ones_do_not_count() -> None:
    rooms: Rooms[str] = Rooms(max_rooms=2, ttl_s=10.0)
    a = rooms.create("a", now=0.0)
    rooms.create("b", now=0.0)
    refused(rooms, Code.TOO_MANY_ROOMS, rooms.create, "c", 5.0)
    rooms.occupied(a.id, 0, now=5.0)
    refused(rooms, Code.TOO_MANY_ROOMS, rooms.create, "c", 14.0)  # empty, not yet expired
    assert rooms.create("c", now=15.0).id in rooms  # a's room expired at 15


def test_rooms_per_origin_are_limited_while_alive() -> None:
    rooms: Rooms[str] = Rooms(per_origin=2, ttl_s=10.0)
    a = rooms.create("a", 0.0, origin="10.0.0.1")
    rooms.create("b", 0.0, origin="10.0.0.1")
    refused(rooms, Code.TOO_MANY_ROOMS, rooms.create, "c", 1.0, "10.0.0.1")
    assert rooms.create("c", 1.0, origin="10.0.0.2").id in rooms  # another address
    assert rooms.create("d", 1.0).id in rooms  # no origin given: no quota
    rooms.occupied(a.id, 0, now=1.0)
    assert rooms.create("e", 11.0, origin="10.0.0.1").id in rooms  # a's room expired


def test_the_last_one_out_starts_the_expiry_clock() -> None:
    rooms: Rooms[str] = Rooms(ttl_s=10.0)
    room = rooms.create("d", now=0.0)
    assert rooms.expire(now=100.0) == []  # never empty: never expires
    rooms.occupied(room.id, 0, now=100.0)
    assert rooms.expire(now=109.9) == [] and room.id in rooms
    rooms.occupied(room.id, 1, now=105.0)  # someone came back
    rooms.occupied(room.id, 0, now=106.0)
    assert rooms.expire(now=115.9) == []  # the clock restarted at 106
    assert rooms.expire(now=116.0) == ["d"]
    assert room.id not in rooms and len(rooms) == 0


# ---- parked sessions --------------------------------------------------------------------------


def resume_error(parked: Parked[str], token: str, now: float) -> ResumeError:
    with pytest.raises(ResumeFailed) as info:
        parked.resume(token, now)
    return info.value.code


def test_resume_within_the_grace_period_gives_the_same_session_once() -> None:
    parked: Parked[str] = Parked(grace_s=60.0)
    assert parked.park("s", "token", now=100.0) and len(parked) == 1
    assert parked.resume("token", now=159.9) == "s"
    assert len(parked) == 0
    assert resume_error(parked, "token", 160.0) is ResumeError.UNKNOWN  # used


def test_resume_after_the_grace_period_is_expired_not_unknown() -> None:
    parked: Parked[str] = Parked(grace_s=60.0, remember_s=600.0)
    parked.park("s1", "welcome-token", now=0.0)
    for now in (60.0, 61.0):  # before and after the sweep
        assert resume_error(parked, "welcome-token", now) is ResumeError.EXPIRED
        assert parked.expire(now) == (["s1"] if now == 60.0 else [])
    assert len(parked) == 0
    parked.expire(now=660.0)  # forgotten after remember_s
    assert resume_error(parked, "welcome-token", 661.0) is ResumeError.UNKNOWN


def test_expire_releases_only_sessions_past_their_grace() -> None:
    parked: Parked[str] = Parked(grace_s=10.0)
    parked.park("early", "t1", now=0.0)
    parked.park("late", "t2", now=5.0)
    assert parked.expire(now=9.0) == []
    assert parked.expire(now=10.0) == ["early"]
    assert parked.resume("t2", now=14.0) == "late"
    assert resume_error(parked, "t1", 14.0) is ResumeError.EXPIRED


def test_parking_is_limited_and_unknown_tokens_are_refused() -> None:
    parked: Parked[str] = Parked(max_parked=1)
    assert parked.park("a", "t", now=0.0)
    assert not parked.park("b", "u", now=0.0) and len(parked) == 1
    assert parked.park("a again", "t", now=1.0)  # re-parking under a token is not new
    assert resume_error(parked, "guess", 1.0) is ResumeError.UNKNOWN
    assert parked.resume("t", now=1.0) == "a again"
