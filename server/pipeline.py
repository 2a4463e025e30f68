"""Coalescing: which snapshot of a canvas to predict next. One per canvas, solo or shared.

Belongs here: the dirty flag, the one prediction in flight, the queue of final answers and
late binding. Pure: no I/O, no clock, no model; the caller runs each job it is handed and
reports back with `done`.

Rules: at most one job in flight. Ink changes meanwhile only mark the canvas dirty; when the
job is done, one job of the then-newest ink follows. Each `recognize` is a final job of the
ink as it was when the recognize was applied, answered in order; it also counts as the
prediction of that ink. A live job still queued for inference may be swapped for the newest
ink as it leaves the queue (`refresh`), unless a final answer is waiting behind it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class Job(Protocol):
    @property
    def final(self) -> bool: ...


S = TypeVar("S", bound=Job)  # a snapshot of the ink


class Pipeline(Generic[S]):
    """Feed it `changed` and `final`; run each snapshot it returns, then call `done`."""

    def __init__(self, take: Callable[[], S]) -> None:
        self._take = take  # the canvas's newest live snapshot
        self.dirty = False  # the ink changed since the last job was taken
        self.busy = False  # a job is in flight
        self.finals: deque[S] = deque()

    def changed(self) -> S | None:
        """The ink changed: the job to start now, if none is in flight."""
        self.dirty = True
        return self._next()

    def final(self, snapshot: S) -> S | None:
        """A final answer of `snapshot` is wanted: the job to start now, if any."""
        self.finals.append(snapshot)
        self.dirty = False  # the final answer covers the ink as it is now
        return self._next()

    def done(self) -> S | None:
        """The job in flight has been answered (or failed): the next job, if any."""
        self.busy = False
        return self._next()

    def refresh(self, pending: S) -> S:
        """Late binding, as a live job leaves the inference queue: the newest ink instead,
        when it changed and no final answer waits to be sent first."""
        if pending.final or self.finals or not self.dirty:
            return pending
        self.dirty = False
        return self._take()

    def reset(self) -> None:
        """Forget the job in flight and what waited (its connections are gone)."""
        self.busy = self.dirty = False
        self.finals.clear()

    def _next(self) -> S | None:
        if self.busy:
            return None
        if self.finals:
            self.busy = True
            return self.finals.popleft()
        if self.dirty:
            self.dirty, self.busy = False, True
            return self._take()
        return None
