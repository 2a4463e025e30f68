"""server/deadlines.py: which deadline a connection has missed, at literal clock readings."""

from __future__ import annotations

from protocol import CloseCode, Code, Limits
from server.deadlines import overdue, sweep_period

LIMITS = Limits(hello_timeout_s=5.0, idle_timeout_s=300.0)


def test_no_hello_within_the_timeout_closes_with_policy() -> None:
    assert overdue(105.0, 100.0, 104.9, False, LIMITS) is None
    error = overdue(105.1, 100.0, 105.0, False, LIMITS)  # frames meanwhile do not help
    assert error is not None
    assert (error.code, error.close_code) == (Code.HELLO_TIMEOUT, CloseCode.POLICY)
    assert error.message == "no hello within 5 s of connecting"


def test_a_welcomed_connection_has_only_the_idle_deadline() -> None:
    assert overdue(399.0, 100.0, 100.0, True, LIMITS) is None
    error = overdue(400.5, 100.0, 100.0, True, LIMITS)
    assert error is not None
    assert (error.code, error.close_code) == (Code.IDLE_TIMEOUT, CloseCode.NORMAL)


def test_the_sweeper_looks_at_least_four_times_per_deadline() -> None:
    assert sweep_period(LIMITS) == 1.0
    assert sweep_period(Limits(hello_timeout_s=0.2)) == 0.05
    assert sweep_period(Limits(idle_timeout_s=0.3)) == 0.075
