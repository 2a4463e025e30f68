"""A token bucket for messages per connection. Pure: the caller passes the clock.

Belongs here: refill, spend, and the flood rule. A message beyond the bucket is refused;
refused messages still cost a token, so a client that keeps flooding drives the bucket to
`-burst`, the point at which the connection is closed.
"""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    ALLOW = "allow"
    REFUSE = "refuse"  # drop the message, tell the client
    FLOOD = "flood"  # close the connection


class TokenBucket:
    """`rate` tokens per second, holding at most `burst`; one message costs one token."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens = float(burst)
        self.updated = now

    def take(self, cost: float, now: float) -> float:
        """Refill for the time since the last take, then take `cost` tokens, into debt if
        need be; the tokens left (negative: the debt)."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= cost
        return self.tokens

    def spend(self, now: float) -> Verdict:
        self.take(1.0, now)
        if self.tokens >= 0.0:
            return Verdict.ALLOW
        if self.tokens <= -self.burst:
            return Verdict.FLOOD
        return Verdict.REFUSE
