"""server/ratelimit.py: the token bucket, with a clock we pass in."""

from __future__ import annotations

from server.ratelimit import TokenBucket, Verdict


def test_burst_then_refusal_then_refill() -> None:
    bucket = TokenBucket(rate=10.0, burst=3, now=0.0)
    assert [bucket.spend(0.0) for _ in range(3)] == [Verdict.ALLOW] * 3
    assert bucket.spend(0.0) is Verdict.REFUSE
    assert bucket.spend(0.25) is Verdict.ALLOW  # 2.5 tokens back, minus the debt of 1
    assert bucket.tokens == 0.5


def test_a_sustained_flood_is_flagged_once_the_debt_reaches_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=3, now=0.0)
    verdicts = [bucket.spend(0.0) for _ in range(6)]
    assert verdicts == [Verdict.ALLOW] * 3 + [Verdict.REFUSE] * 2 + [Verdict.FLOOD]


def test_steady_rate_within_limit_is_always_allowed() -> None:
    bucket = TokenBucket(rate=60.0, burst=5, now=0.0)
    assert all(bucket.spend(i / 60.0) is Verdict.ALLOW for i in range(1, 600))
