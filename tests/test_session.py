"""server/session.py: the session's state table and its welcome."""

from __future__ import annotations

import pytest

from protocol import (
    Clear,
    ClientMessage,
    Code,
    End,
    Hello,
    Join,
    Leave,
    Limits,
    Ping,
    PointsMsg,
    ProtocolError,
    Recognize,
    Share,
    Start,
    Undo,
)
from server.session import TABLE, Identity, Session, State

EVERY = [Start(), PointsMsg(), End(), Undo(), Clear(), Recognize(), Ping(), Share(), Leave()]


def new_session(**limits: int) -> Session:
    return Session(Identity("sid", "tok", "digits", "cpu", "litert", Limits(**limits)))


def test_hello_leads_to_ready_and_welcome_carries_the_options_and_limits() -> None:
    s = new_session(max_connections=9)
    s.advance(Hello(top_k=5, preview=True))
    welcome = s.welcome(Hello(top_k=5, preview=True), resumed=False, resume_error=None)
    assert s.state is State.READY and (s.top_k, s.preview) == (5, True)
    assert (welcome.session, welcome.resume_token, welcome.top_k, welcome.preview) == (
        "sid",
        "tok",
        5,
        True,
    )
    assert welcome.limits.max_connections == 9 and (welcome.strokes, welcome.points) == (0, 0)
    failed = s.welcome(Hello(), resumed=False, resume_error="resume_unknown")
    assert (failed.resumed, failed.resume_error) == (False, "resume_unknown")


@pytest.mark.parametrize("msg", [*EVERY, Join("r", "t")])
def test_anything_before_hello_is_hello_first_and_changes_nothing(msg: ClientMessage) -> None:
    s = new_session()
    with pytest.raises(ProtocolError) as info:
        s.advance(msg)
    assert (info.value.code, info.value.close_code) == (Code.HELLO_FIRST, 1008)
    assert s.state is State.AWAIT_HELLO


def test_a_second_hello_is_refused_and_the_session_goes_on() -> None:
    s = new_session()
    s.advance(Hello())
    with pytest.raises(ProtocolError) as info:
        s.advance(Hello(seq=2))
    assert (info.value.code, info.value.seq, info.value.close_code) == (
        Code.ALREADY_HELLO,
        2,
        None,
    )
    assert s.state is State.READY


def test_the_table_covers_every_message_once_ready_and_nothing_when_parked() -> None:
    ready = {kind for state, kind in TABLE if state is State.READY}
    assert ready == {type(m) for m in [*EVERY, Join("r", "t")]}
    assert not any(state is State.PARKED for state, _ in TABLE)
    assert TABLE[(State.AWAIT_HELLO, Hello)] is State.READY
