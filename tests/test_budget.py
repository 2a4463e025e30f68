"""server/budget.py: points budgets at literal clock readings."""

from __future__ import annotations

import pytest

from server.budget import AddressBudgets, PointBudget


def test_the_burst_is_spent_at_once_then_ink_waits_for_the_refill() -> None:
    budget = PointBudget(rate=1000, burst=2000, now=0.0)
    assert budget.spend(2000, 0.0) == 0.0  # a whole drawing at once
    assert budget.spend(500, 0.0) == pytest.approx(0.5)  # in debt: wait for 500 points
    assert budget.spend(500, 0.5) == pytest.approx(0.5)  # the next waits behind it
    assert budget.spend(0, 1.5) == 0.0  # paid off


def test_savings_stop_at_the_burst() -> None:
    budget = PointBudget(rate=1000, burst=2000, now=0.0)
    assert budget.spend(1, 3600.0) == 0.0
    assert budget.tokens == 1999.0
    assert budget.spend(2000, 3600.0) == pytest.approx(0.001)


def test_a_sustained_sender_is_held_to_the_rate() -> None:
    budget, now, sent = PointBudget(rate=1000, burst=0, now=0.0), 0.0, 0
    while now < 10.0:  # a client that sends 512 points whenever it is allowed to
        now += budget.spend(512, now)
        sent += 512
    assert sent / now == pytest.approx(1000, rel=0.06)


def test_unusable_budgets_are_refused() -> None:
    with pytest.raises(ValueError):
        PointBudget(rate=0, burst=10, now=0.0)


def test_connections_of_one_address_share_its_budget() -> None:
    table = AddressBudgets(rate=1000, burst=1000)
    a, b = table.acquire("10.0.0.1", 0.0), table.acquire("10.0.0.1", 0.0)
    other = table.acquire("10.0.0.2", 0.0)
    assert a is b and a is not other
    assert a.spend(1000, 0.0) == 0.0
    assert b.spend(500, 0.0) == pytest.approx(0.5)  # the first used the address's burst
    assert other.spend(1000, 0.0) == 0.0
    table.release("10.0.0.1")
    assert len(table) == 2
    table.release("10.0.0.1")
    table.release("10.0.0.1")  # one release too many changes nothing
    assert len(table) == 1
    assert table.acquire("10.0.0.1", 9.0) is not a  # a new budget for a returning address
