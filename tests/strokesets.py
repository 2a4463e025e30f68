"""Literal stroke sets shared by the preprocessing tests and their golden images."""

from __future__ import annotations

import math

ONE = [[[50, 10], [50, 90]]]
SEVEN = [[[10, 10], [80, 10], [40, 95]], [[30, 55], [70, 55]]]
ZERO = [
    [
        [50 + 30 * math.sin(2 * math.pi * k / 24), 50 - 45 * math.cos(2 * math.pi * k / 24)]
        for k in range(25)
    ]
]
FOUR = [[[60, 0], [10, 60], [80, 60]], [[60, 20], [60, 100]]]

GOLDEN = {"one": ONE, "seven": SEVEN, "zero": ZERO, "four": FOUR}
