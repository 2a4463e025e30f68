"""server/errors.py: the one error funnel, for every kind of exception."""

from __future__ import annotations

import logging

import pytest

from protocol import CloseCode, Code, Error, ProtocolError
from server.errors import fault, flooding, rate_limited, too_slow


def test_a_client_fault_keeps_its_code_message_and_seq() -> None:
    f = fault(ProtocolError(Code.NO_STROKE, "no open stroke", 7))
    assert (f.error, f.close_code, f.label) == (
        Error("no_stroke", "no open stroke", 7),
        None,
        "no_stroke",
    )


def test_the_seq_of_the_message_names_an_error_raised_without_one() -> None:
    assert fault(ProtocolError(Code.ROOM_REFUSED, "no room"), seq=3).error.seq == 3
    assert fault(ProtocolError(Code.ROOM_REFUSED, "no room", 2), seq=3).error.seq == 2


@pytest.mark.parametrize(
    ("exc", "close"),
    [
        (ProtocolError(Code.HELLO_FIRST, "x"), CloseCode.POLICY),
        (ProtocolError(Code.BAD_VERSION, "x"), CloseCode.POLICY),
        (ProtocolError(Code.IDLE_TIMEOUT, "x"), CloseCode.NORMAL),
        (ProtocolError(Code.TOO_MANY_CONNECTIONS, "x"), CloseCode.OVERLOADED),
        (flooding(), CloseCode.POLICY),
        (too_slow(), CloseCode.POLICY),
        (rate_limited(4), None),
    ],
)
def test_fatal_codes_close_with_their_close_code(exc: ProtocolError, close: CloseCode) -> None:
    assert fault(exc).close_code == close


def test_an_unknown_exception_is_internal_1011_logged_and_tells_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="server"):
        f = fault(KeyError("secret detail"), seq=5)
    assert f.error == Error("internal", "internal error", 5)
    assert (f.close_code, f.label) == (CloseCode.INTERNAL, "internal")
    (record,) = caplog.records
    assert record.exc_info is not None and "secret detail" in caplog.text
