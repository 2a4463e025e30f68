"""server/session.py: the state table, the ink after each step, and coalescing."""

from __future__ import annotations

import numpy as np
import pytest

from server.errors import ClientError, Code
from server.protocol import (
    Clear,
    ClientMessage,
    End,
    Hello,
    Join,
    Leave,
    Limits,
    Ping,
    PointsMsg,
    Pong,
    Recognize,
    Share,
    Start,
    Undo,
    Welcome,
)
from server.session import TABLE, Identity, Predict, Send, Session, Snapshot, State, ToRoom


def new_session(**limits: int) -> Session:
    return Session(Identity("sid", "tok", "digits", "cpu", "litert", Limits(**limits)))


def greeted(**limits: int) -> Session:
    s = new_session(**limits)
    s.apply(Hello(top_k=5, preview=True))
    return s


def predicted(actions: list[Send | Predict]) -> Snapshot:
    (action,) = actions
    assert isinstance(action, Predict)
    return action.snapshot


def ink(s: Session) -> list[list[list[float]]]:
    return [stroke.tolist() for stroke in s.snapshot(False).strokes]


def test_hello_welcomes_with_the_options_and_limits() -> None:
    s = new_session(max_connections=9)
    (action,) = s.apply(Hello(top_k=5, preview=True))
    assert isinstance(action, Send) and isinstance(action.message, Welcome)
    welcome = action.message
    assert (welcome.session, welcome.top_k, welcome.preview) == ("sid", 5, True)
    assert welcome.limits.max_connections == 9
    assert (s.state, s.top_k, s.preview) == (State.IDLE, 5, True)


@pytest.mark.parametrize("msg", [Start(), PointsMsg(), End(), Undo(), Clear(), Recognize(), Ping()])
def test_anything_before_hello_is_refused(msg: ClientMessage) -> None:
    s = new_session()
    with pytest.raises(ClientError) as info:
        s.apply(msg)
    assert info.value.code is Code.HELLO_FIRST
    assert info.value.close_code == 1008
    assert s.state is State.AWAIT_HELLO


def test_a_drawing_step_by_step() -> None:
    s = greeted()
    snap = predicted(s.apply(Start(((0.0, 0.0),), seq=1)))
    assert (s.state, s.seq, s.in_flight, s.dirty) == (State.DRAWING, 1, True, False)
    assert (snap.seq, snap.final, snap.points) == (1, False, 1)

    assert s.apply(PointsMsg(((1.0, 1.0), (2.0, 2.0, 99.0)), seq=2)) == []  # coalesced
    assert (s.seq, s.dirty, s.total_points) == (2, True, 3)
    assert ink(s) == [[[0, 0], [1, 1], [2, 2]]]

    snap = predicted(s.prediction_done())  # the newest ink, once
    assert (snap.seq, snap.points, s.dirty, s.in_flight) == (2, 3, False, True)

    assert s.apply(End(((3.0, 3.0),), seq=3)) == []
    assert (s.state, s.strokes, s.dirty) == (State.IDLE, 1, True)
    snap = predicted(s.prediction_done())
    assert snap.seq == 3 and snap.points == 4
    assert s.prediction_done() == []
    assert (s.in_flight, s.dirty) == (False, False)


def test_snapshots_do_not_change_when_the_ink_does() -> None:
    s = greeted()
    snap = predicted(s.apply(Start(((0.0, 0.0),), seq=1)))
    s.apply(PointsMsg(((5.0, 5.0),), seq=2))
    s.apply(Clear(seq=3))
    assert [a.tolist() for a in snap.strokes] == [[[0.0, 0.0]]]


def test_recognize_is_final_and_waits_for_the_prediction_in_flight() -> None:
    s = greeted()
    s.apply(Start(((0.0, 0.0),), seq=1))
    assert s.apply(PointsMsg(((1.0, 0.0),), seq=2)) == []
    assert s.apply(Recognize(seq=3)) == []
    assert (s.final_wanted, s.state) == (True, State.DRAWING)
    snap = predicted(s.prediction_done())
    assert (snap.final, snap.seq, snap.points, s.dirty) == (True, 3, 2, False)
    assert s.prediction_done() == []


def test_start_during_a_stroke_ends_it_first() -> None:
    s = greeted()
    s.apply(Start(((0.0, 0.0), (1.0, 1.0))))
    s.apply(Start(((5.0, 5.0),)))
    assert (s.state, s.strokes) == (State.DRAWING, 2)
    assert ink(s) == [[[0, 0], [1, 1]], [[5, 5]]]


def test_undo_removes_the_open_stroke_or_the_last_one() -> None:
    s = greeted()
    s.apply(Start(((0.0, 0.0),)))
    s.apply(End(((1.0, 1.0),)))
    s.apply(Start(((7.0, 7.0),)))
    s.apply(Undo(seq=4))
    assert (s.state, ink(s), s.total_points) == (State.IDLE, [[[0, 0], [1, 1]]], 2)
    s.apply(Undo(seq=5))
    assert (ink(s), s.total_points, s.strokes) == ([], 0, 0)
    s.apply(Undo(seq=6))  # nothing left: harmless, still predicts (empty)
    assert (ink(s), s.seq) == ([], 6)


def test_clear_empties_everything() -> None:
    s = greeted()
    s.apply(Start(((0.0, 0.0),)))
    s.apply(End(((1.0, 1.0),)))
    s.apply(Start(((2.0, 2.0),)))
    s.apply(Clear(seq=9))
    assert (s.state, ink(s), s.total_points, s.seq) == (State.IDLE, [], 0, 9)


@pytest.mark.parametrize(
    ("msg", "code"),
    [
        (PointsMsg(((1.0, 1.0),), seq=4), Code.NO_STROKE),
        (End(seq=4), Code.NO_STROKE),
        (Hello(seq=4), Code.ALREADY_HELLO),
    ],
)
def test_illegal_messages_change_nothing(msg: ClientMessage, code: Code) -> None:
    s = greeted()
    s.apply(Start(((0.0, 0.0),), seq=1))
    s.apply(End(seq=2))
    before = (s.state, ink(s), s.seq, s.dirty, s.in_flight, s.total_points)
    with pytest.raises(ClientError) as info:
        s.apply(msg)
    assert (info.value.code, info.value.seq, info.value.close_code) == (code, 4, None)
    assert (s.state, ink(s), s.seq, s.dirty, s.in_flight, s.total_points) == before


def test_point_and_stroke_limits_per_session() -> None:
    s = greeted(max_points_per_session=3, max_strokes_per_session=2)
    s.apply(Start(((0.0, 0.0), (1.0, 1.0))))
    with pytest.raises(ClientError) as info:
        s.apply(PointsMsg(((2.0, 2.0), (3.0, 3.0))))
    assert info.value.code is Code.TOO_MANY_POINTS
    assert s.total_points == 2 and s.state is State.DRAWING
    s.apply(End(((2.0, 2.0),)))
    s.apply(Undo())
    s.apply(Start(((0.0, 0.0),)))
    s.apply(Start(((1.0, 1.0),)))
    with pytest.raises(ClientError) as info:
        s.apply(Start(((2.0, 2.0),)))
    assert info.value.code is Code.TOO_MANY_STROKES
    assert s.strokes == 2


def test_ping_answers_without_touching_the_ink() -> None:
    s = greeted()
    s.apply(Start(((0.0, 0.0),), seq=1))
    assert s.apply(Ping(seq=77)) == [Send(Pong(77))]
    assert (s.seq, s.dirty) == (1, False)


def test_state_table_covers_every_message_in_every_state() -> None:
    kinds = {Hello, Start, PointsMsg, End, Undo, Clear, Recognize, Ping, Share, Join}
    assert {t for (st, t) in TABLE if st is State.AWAIT_HELLO} == {Hello}
    assert {t for (st, t) in TABLE if st is State.IDLE} == kinds - {Hello, PointsMsg, End}
    assert {t for (st, t) in TABLE if st is State.DRAWING} == kinds - {Hello}
    assert Leave not in {t for (_, t) in TABLE}  # legal only in a room (ROOM_ROUTED)


# ---- shared and resumed sessions ------------------------------------------------------------


def test_share_and_join_go_to_the_room_and_change_nothing_yet() -> None:
    s = greeted()
    s.apply(Start(((0.0, 0.0), (1.0, 1.0)), seq=1))
    for msg in (Share(2), Join("r", "t", 3)):
        assert s.apply(msg) == [ToRoom(msg)]
        assert (s.state, s.room, s.total_points) == (State.DRAWING, None, 2)
    assert s.ink() == (((0.0, 0.0), (1.0, 1.0)),)


def test_in_a_room_ink_messages_go_to_the_room() -> None:
    s = greeted()
    s.apply(Start(((0.0, 0.0),)))
    s.enter_room("r")
    assert (s.state, s.strokes, s.total_points, s.room) == (State.IDLE, 0, 0, "r")
    for msg in (Start(), PointsMsg(((1.0, 1.0),)), End(), Undo(), Clear(), Recognize(4), Leave(5)):
        assert s.apply(msg) == [ToRoom(msg)]
    assert s.apply(Ping(6)) == [Send(Pong(6))]
    assert s.strokes == 0


def test_leave_outside_a_room_is_not_in_room() -> None:
    s = greeted()
    with pytest.raises(ClientError) as info:
        s.apply(Leave(3))
    assert (info.value.code, info.value.seq) == (Code.NOT_IN_ROOM, 3)


def test_leaving_keeps_a_copy_of_the_room_ink_and_predicts_it() -> None:
    s = greeted()
    s.enter_room("r")
    snap = predicted(s.leave_room([((0.0, 0.0, 5.0), (2.0, 2.0, 6.0)), (), ((3.0, 3.0),)]))
    assert s.room is None and s.strokes == 2 and s.total_points == 3
    assert [a.tolist() for a in snap.strokes] == [[[0.0, 0.0], [2.0, 2.0]], [[3.0, 3.0]]]


def test_park_ends_the_open_stroke_and_resume_welcomes_then_predicts() -> None:
    s = greeted()
    s.apply(Start(((0.0, 0.0), (1.0, 1.0)), seq=1))
    s.park()
    assert (s.state, s.strokes, s.in_flight, s.dirty) == (State.IDLE, 1, False, False)
    welcome_action, predict = s.resume(Hello(top_k=2, resume="tok"), "new-token")
    assert isinstance(welcome_action, Send) and isinstance(welcome_action.message, Welcome)
    welcome = welcome_action.message
    assert (welcome.session, welcome.resume_token, welcome.resumed) == ("sid", "new-token", True)
    assert (welcome.strokes, welcome.points, welcome.top_k) == (1, 2, 2)
    assert isinstance(predict, Predict) and predict.snapshot.points == 2
    with pytest.raises(ClientError) as info:  # the stroke open at the drop was ended
        s.apply(PointsMsg(((2.0, 2.0),)))
    assert info.value.code is Code.NO_STROKE


def test_a_failed_resume_is_named_in_the_welcome() -> None:
    s = new_session()
    s.resume_error = "resume_expired"
    (action,) = s.apply(Hello(resume="old"))
    assert isinstance(action, Send) and isinstance(action.message, Welcome)
    assert (action.message.resumed, action.message.resume_error) == (False, "resume_expired")


def test_snapshot_arrays_are_float_xy() -> None:
    s = greeted()
    s.apply(Start(((1.0, 2.0, 3.0),)))
    (stroke,) = s.snapshot(False).strokes
    assert stroke.dtype == np.float64 and stroke.shape == (1, 2)


def test_refresh_swaps_a_queued_live_prediction_for_the_newest_ink() -> None:
    s = greeted()
    queued = predicted(s.apply(Start(((0.0, 0.0),), seq=1)))
    assert s.apply(PointsMsg(((1.0, 1.0),), seq=2)) == []
    assert s.dirty
    fresh = s.refresh(queued)
    assert (fresh.seq, fresh.points, fresh.final, s.dirty) == (2, 2, False, False)
    assert s.prediction_done() == []  # nothing newer left to predict
    assert s.refresh(fresh) is fresh  # not dirty: unchanged


def test_refresh_leaves_finals_as_recognize_asked() -> None:
    s = greeted()
    s.apply(Start(((0.0, 0.0),), seq=1))  # a live prediction in flight
    assert s.apply(Recognize(seq=2)) == []  # the final waits for it
    final = predicted(s.prediction_done())
    assert final.final and final.seq == 2
    s.apply(PointsMsg(((1.0, 1.0),), seq=3))
    assert s.refresh(final) is final and s.dirty  # still the ink recognize asked about
    live = predicted(s.prediction_done())
    assert not live.final and live.seq == 3
    s.apply(Recognize(seq=4))
    assert s.refresh(live) is live  # a final is wanted next: this one stays as it was
