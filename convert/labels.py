"""Which letters and symbols the model must reject as "not a digit", and which it may read
as a digit, following the look-alike table of the UNIPEN letters file's README.

Belongs here: the three label groups and their reasons (written into the model card). No I/O.
"""

from __future__ import annotations

from typing import Literal

Group = Literal["lookalike", "similar", "reject"]

#: Often drawn exactly like a digit: the same ink can be a 0 or an O. Not required to be
#: rejected, and never trained as "not a digit".
LOOKALIKE = frozenset("OolI|ZzSsbBgq")
#: Sometimes drawn like a digit (a `u` like a 0, a `/` or `(` like a 1, a `y` like a 4, a
#: `?` without its dot like a 2), or a tiny mark (`.` `,` `'` `` ` ``) that scaling turns
#: into a blob or a stroke. Rejection is reported, not required; not trained as "not a digit".
SIMILAR = frozenset("DQUuCc.ijJ/\\!'`,;()[]T?}yY$G>&a")
#: Everything else must be rejected: letters and symbols no digit is written like (A E F H
#: K M N R W X k m n w x # % @ * ...), including `+` (the issue names it as clearly different
#: although the README lists it as sometimes like a 4) and `-` `_` `~` `=` (lines and waves).

REASONS: dict[Group, str] = {
    "lookalike": "often drawn exactly like a digit (O/o as 0, l/I/| as 1, Z/z as 2, S/s as 5, "
    "b as 6, B as 8, g/q as 9): the ink alone cannot tell them apart; accepting them as "
    "that digit is expected",
    "similar": "sometimes drawn like a digit, or a tiny mark that normalisation blows up into "
    "a blob or a stroke: rejection is measured and reported, not required",
    "reject": "no digit is written like these: the model must say not_digit (target: at "
    "least 90% rejected)",
}


def group(char: str) -> Group:
    """The group of a non-digit label."""
    if char in LOOKALIKE:
        return "lookalike"
    if char in SIMILAR:
        return "similar"
    return "reject"


def card_entry() -> dict[str, object]:
    """The reject list as the model card records it."""
    return {
        "lookalike": "".join(sorted(LOOKALIKE)),
        "similar": "".join(sorted(SIMILAR)),
        "reject": "every other non-digit label",
        "reasons": dict(REASONS),
    }
