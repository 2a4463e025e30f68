"""server/verdict.py: the pure decision digit / unsure / not_digit and its thresholds."""

from __future__ import annotations

import pytest

from server.verdict import Thresholds, decide

T = Thresholds(reject_at=0.5, unsure_below=0.6)


@pytest.mark.parametrize(
    ("top", "not_digit", "expected"),
    [
        (0.99, 0.01, "digit"),
        (0.6, 0.0, "digit"),  # at the threshold: sure enough
        (0.59, 0.0, "unsure"),  # a half-drawn digit: several digits still possible
        (0.2, 0.49, "unsure"),
        (0.99, 0.5, "not_digit"),  # at the threshold: rejected, however sure the best digit
        (0.3, 0.97, "not_digit"),
    ],
)
def test_decide(top: float, not_digit: float, expected: str) -> None:
    assert decide(top, not_digit, T) == expected


def test_rejection_wins_over_confidence() -> None:
    strict = Thresholds(reject_at=0.2, unsure_below=0.0)
    assert decide(1.0, 0.25, strict) == "not_digit"
    assert decide(0.01, 0.1, strict) == "digit"  # unsure_below 0: never unsure


def test_thresholds_come_from_the_card_unless_given() -> None:
    card = {"verdict": {"reject_at": 0.7, "unsure_below": 0.4}}
    assert Thresholds.from_card(card) == Thresholds(0.7, 0.4)
    assert Thresholds.from_card(card, reject_at=0.9) == Thresholds(0.9, 0.4)
    assert Thresholds.from_card(card, unsure_below=0.8) == Thresholds(0.7, 0.8)
    assert Thresholds.from_card({}) == Thresholds()  # a card from before the verdict


@pytest.mark.parametrize(("reject_at", "unsure_below"), [(0.0, 0.5), (1.5, 0.5), (0.5, -0.1)])
def test_thresholds_out_of_range_are_refused(reject_at: float, unsure_below: float) -> None:
    with pytest.raises(ValueError, match="thresholds"):
        Thresholds(reject_at, unsure_below)
