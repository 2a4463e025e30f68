"""Points budgets: how much ink a connection, and all connections of one client address
together, may send per second. Pure: the caller passes the clock's reading.

Belongs here: the debt-keeping token bucket and the table of per-address buckets. Ink beyond
a budget is not refused (that would lose strokes): `spend` goes into debt and says how long
to wait before the ink may be applied; the connection stops reading meanwhile, so a client
sending faster than its budget is slowed by TCP backpressure and nobody else notices.
"""

from __future__ import annotations

from server.ratelimit import TokenBucket


class PointBudget:
    """`rate` points per second, saving up at most `burst` (so a whole drawing can be sent at
    once). `spend` always succeeds; beyond the budget it runs into debt and returns the
    seconds until the debt is paid off, when the ink may be applied."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 0:
            raise ValueError("a points budget needs rate > 0 and burst >= 0")
        self._bucket = TokenBucket(rate, burst, now)  # one token per point

    @property
    def tokens(self) -> float:
        return self._bucket.tokens

    def spend(self, points: int, now: float) -> float:
        """Spend `points`; the seconds to wait before using them (0: at once)."""
        left = self._bucket.take(points, now)
        return 0.0 if left >= 0 else -left / self._bucket.rate


class AddressBudgets:
    """One PointBudget per client address, shared by its connections; `release` forgets an
    address when its last connection is gone, so the table holds live addresses only."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._budgets: dict[str, tuple[PointBudget, int]] = {}

    def acquire(self, address: str, now: float) -> PointBudget:
        budget, users = self._budgets.get(address) or (PointBudget(self.rate, self.burst, now), 0)
        self._budgets[address] = (budget, users + 1)
        return budget

    def release(self, address: str) -> None:
        entry = self._budgets.get(address)
        if entry is None:
            return
        budget, users = entry
        if users <= 1:
            del self._budgets[address]
        else:
            self._budgets[address] = (budget, users - 1)

    def __len__(self) -> int:
        return len(self._budgets)
