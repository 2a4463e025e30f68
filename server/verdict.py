"""The verdict on a drawing: a digit, maybe a digit (unsure), or not a digit.

Belongs here: the decision from the model's probabilities and two thresholds, and where the
thresholds' defaults come from (the model card). Pure; no model, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Verdict = Literal["digit", "unsure", "not_digit"]
VERDICTS: tuple[Verdict, ...] = ("digit", "unsure", "not_digit")


@dataclass(frozen=True, slots=True)
class Thresholds:
    """`reject_at`: not_digit once P(not a digit) reaches it. `unsure_below`: unsure while
    the most probable digit's probability (given a digit) stays below it."""

    reject_at: float = 0.4  # the shipped card's (convert/ship.py THRESHOLDS_WHY says why)
    unsure_below: float = 0.6

    def __post_init__(self) -> None:
        if not (0.0 < self.reject_at <= 1.0 and 0.0 <= self.unsure_below <= 1.0):
            raise ValueError(
                f"thresholds must be in (0, 1] and [0, 1], got reject_at={self.reject_at}, "
                f"unsure_below={self.unsure_below}"
            )

    def to_card(self) -> dict[str, float]:
        """The card's `verdict` entry (what `from_card` reads)."""
        return {"reject_at": self.reject_at, "unsure_below": self.unsure_below}

    @classmethod
    def from_card(
        cls,
        card: Mapping[str, Any],
        reject_at: float | None = None,
        unsure_below: float | None = None,
    ) -> Thresholds:
        """The card's thresholds (its `verdict` entry), each overridden when given."""
        raw = card.get("verdict") or {}
        default = cls()
        return cls(
            float(raw.get("reject_at", default.reject_at)) if reject_at is None else reject_at,
            float(raw.get("unsure_below", default.unsure_below))
            if unsure_below is None
            else unsure_below,
        )


def decide(top_probability: float, not_digit: float, thresholds: Thresholds) -> Verdict:
    """not_digit when P(not a digit) >= reject_at; else unsure when the top digit's
    probability < unsure_below; else digit."""
    if not_digit >= thresholds.reject_at:
        return "not_digit"
    if top_probability < thresholds.unsure_below:
        return "unsure"
    return "digit"
