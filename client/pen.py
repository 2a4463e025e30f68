"""Streaming strokes over a DigitsClient the way a pen (or a hurried program) would.

Belongs here: the frame schedule at pen speed (points batched per animation frame, as a
browser sends them), the message pacer that keeps a client under the server's announced
rate limit, and `Pen`, which sends strokes with both. No files, no output.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass

from client.client import DigitsClient
from protocol import Limits

FRAME_S = 0.016  # a browser sends the points it gathered once per animation frame
RATE_MARGIN = 0.9  # stay this far under the announced message rate


@dataclass(frozen=True, slots=True)
class Pace:
    """How fast to draw: `rate` points per second in frames of `frame_s`, or, when `fast`,
    `batch` points per message with no waiting beyond the server's rate limit."""

    rate: float = 90.0
    fast: bool = False
    batch: int = 8
    frame_s: float = FRAME_S


def frames(count: int, pace: Pace) -> list[tuple[float, int, int]]:
    """Split `count` points into messages: (send at, seconds from the stroke's start;
    first index; end index). At pen speed point i is due at i / rate and each frame
    carries the points due within it; fast mode sends `batch` points at a time at once."""
    if pace.fast:
        return [(0.0, i, min(i + pace.batch, count)) for i in range(0, count, pace.batch)]
    out: list[tuple[float, int, int]] = []
    for i in range(count):
        frame = math.floor(i / pace.rate / pace.frame_s)
        if out and out[-1][0] == frame * pace.frame_s:
            out[-1] = (out[-1][0], out[-1][1], i + 1)
        else:
            out.append((frame * pace.frame_s, i, i + 1))
    return out


class Pacer:
    """A client-side token bucket: `take()` waits until one more message fits under
    `rate` per second with bursts of `burst`, so the server never has to refuse one."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(max(1, burst))
        self.tokens = self.burst
        self.updated = asyncio.get_running_loop().time()

    @classmethod
    def for_limits(cls, limits: Limits) -> Pacer:
        """A pacer safely under the limits a server announced in welcome."""
        return cls(limits.messages_per_second * RATE_MARGIN, limits.message_burst // 2)

    async def take(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1.0:
            await asyncio.sleep((1.0 - self.tokens) / self.rate)
            self.tokens, self.updated = 1.0, loop.time()
        self.tokens -= 1.0


class Pen:
    """Sends strokes and commands over one client, paced. Every method returns the seq of
    the last message it sent."""

    def __init__(self, client: DigitsClient, pace: Pace) -> None:
        self.client, self.pace = client, pace
        welcome = client.welcome
        self.pacer = Pacer.for_limits(welcome.limits if welcome else Limits())

    async def stroke(self, points: Sequence[Sequence[float]]) -> int | None:
        """Draw one stroke: start with the first frame's points, the rest frame by frame,
        then end. An empty stroke sends nothing and returns None."""
        loop = asyncio.get_running_loop()
        begun = loop.time()
        seq = None
        for k, (at, lo, hi) in enumerate(frames(len(points), self.pace)):
            await asyncio.sleep(max(0.0, begun + at - loop.time()))
            await self.pacer.take()
            send = self.client.start_stroke if k == 0 else self.client.points
            seq = await send(points[lo:hi])
        if seq is not None:
            await self.pacer.take()
            seq = await self.client.end_stroke()
        return seq

    async def command(self, name: str) -> int:
        """Send "undo" or "clear"."""
        await self.pacer.take()
        return await (self.client.undo() if name == "undo" else self.client.clear())
