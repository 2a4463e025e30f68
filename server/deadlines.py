"""The two deadlines of a connection: hello within hello_timeout_s of connecting, and a
message at least every idle_timeout_s. Pure: the caller passes the clock's reading.

Belongs here: deciding which deadline, if any, a connection has missed. The sweeper that
acts on it lives in server/app.py.
"""

from __future__ import annotations

from protocol import Code, Limits, ProtocolError


def overdue(
    now: float, opened_at: float, last_seen: float, welcomed: bool, limits: Limits
) -> ProtocolError | None:
    """The error that closes a connection past a deadline, or None while it is within both.
    A socket that never says hello is closed after hello_timeout_s, whatever it sends
    meanwhile, so it cannot hold one of its address's connections for idle_timeout_s."""
    if not welcomed and now - opened_at > limits.hello_timeout_s:
        text = f"no hello within {limits.hello_timeout_s:g} s of connecting"
        return ProtocolError(Code.HELLO_TIMEOUT, text)
    if now - last_seen > limits.idle_timeout_s:
        return ProtocolError(Code.IDLE_TIMEOUT, f"no message for {limits.idle_timeout_s:g} s")
    return None


def sweep_period(limits: Limits) -> float:
    """How often to look: often enough that a deadline is missed by at most a quarter."""
    return max(0.01, min(1.0, limits.idle_timeout_s / 4, limits.hello_timeout_s / 4))
