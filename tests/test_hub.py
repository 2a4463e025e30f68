"""server/hub.py's pure helpers with literal inputs: room events as wire messages, a room
prediction cut to what a member asked for, room ink as a snapshot, limits as room settings.
The hub's run-time behaviour is tested end to end in test_shared.py."""

from __future__ import annotations

import numpy as np

from server import rooms as core
from server.hub import for_member, room_settings, snapshot, wire
from server.protocol import (
    Cleared,
    Guess,
    Hello,
    Limits,
    Prediction,
    Presence,
    StrokeEvent,
    Undone,
)
from server.session import Identity, Session

R = "room1"


def test_room_events_become_the_documented_messages() -> None:
    stroke = core.Stroke(3, "m1", ((1.0, 2.0, 9.0),), True)
    cases = [
        (core.Joined(R, "m2", core.Role.WATCH), Presence(R, "joined", "m2", "watch")),
        (core.Left(R, "m2"), Presence(R, "left", "m2", "watch")),
        (core.StrokeStarted(R, stroke), StrokeEvent(R, "start", 3, "m1", ((1.0, 2.0, 9.0),))),
        (
            core.StrokePoints(R, 3, "m1", ((4.0, 5.0),)),
            StrokeEvent(R, "points", 3, "m1", ((4.0, 5.0),)),
        ),
        (core.StrokeEnded(R, 3, "m1"), StrokeEvent(R, "end", 3, "m1")),
        (core.Undone(R, 3, "m1"), Undone(R, 3, "m1")),
        (core.Cleared(R, "m1"), Cleared(R, "m1")),
    ]
    for event, message in cases:
        assert wire(event, core.Role.WATCH) == message


def test_a_room_prediction_is_cut_to_each_members_hello() -> None:
    session = Session(Identity("s", "t", "digits", "cpu", "litert"))
    session.apply(Hello(top_k=2, preview=False))
    full = Prediction(None, False, False, tuple(Guess(d, 0.1) for d in range(10)), None, 1, b"x")
    cut = for_member(full, session)
    assert cut.top == full.top[:2] and cut.input is None and cut.seq is None
    session.top_k, session.preview = 10, True
    assert for_member(full, session) == full


def test_room_ink_becomes_an_xy_snapshot_without_empty_strokes() -> None:
    snap = snapshot([((0.0, 1.0, 5.0), (2.0, 3.0, 6.0)), (), ((4.0, 4.0),)], 7, True)
    assert (snap.seq, snap.final, snap.points) == (7, True, 3)
    assert [s.tolist() for s in snap.strokes] == [[[0.0, 1.0], [2.0, 3.0]], [[4.0, 4.0]]]
    assert all(s.dtype == np.float64 for s in snap.strokes)


def test_room_settings_come_from_the_announced_limits() -> None:
    limits = Limits(
        max_members_per_room=3, max_rooms=4, room_empty_ttl_s=5.0,
        max_strokes_per_session=6, max_points_per_session=7, max_rooms_per_client=8,
    )  # fmt: skip
    assert room_settings(limits) == core.RoomSettings(3, 4, 5.0, 6, 7, 8)
