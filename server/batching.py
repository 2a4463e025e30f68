"""A generic asyncio micro-batcher: many awaiting callers -> one batched call in a thread.

Belongs here: the bounded queue, the batch-size and wait limits, running the batch function
in an executor and handing each caller its result. It knows nothing about digits or
WebSockets. Contract: `fn` maps a list to a list of the same length; an exception from `fn`
reaches every caller of that batch; callers cancelled while queued are skipped; the wait
clock starts at the first queued item; `start` and `stop` are called explicitly.

Fair queueing: each item may name a `key` (whose item it is: a client, a tenant) and a
`cost`. Items of one key keep their order; a batch takes one item of each key in turn
(round robin, the turn carried over from batch to batch), so many items of one key cannot
sit ahead of another key's, and stops before its items' costs would pass `max_cost`.
Without keys and costs it is a plain FIFO.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class QueueFull(RuntimeError):
    """The batcher's queue holds `max_queue` items already; the caller may retry later."""


class BatcherStopped(RuntimeError):
    """The batcher is not running (not started yet, or stopped)."""


@dataclass(frozen=True, slots=True)
class BatchStats:
    """What one batch looked like, for metrics."""

    size: int
    waits: tuple[float, ...]  # seconds each item spent queued
    run_s: float  # seconds `fn` took


@dataclass(slots=True)
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    queued_at: float
    cost: float = 1.0


class MicroBatcher(Generic[T, R]):
    """Collects items from concurrent `submit` calls and runs `fn` on them in batches.

    A batch is dispatched when `max_batch` items are queued or `max_wait` seconds after
    its first item was queued, whichever is first; it holds at most `max_batch` items and,
    beyond its first, items costing at most `max_cost` together. `fn` runs in `executor`
    (by default a dedicated single thread), so the event loop keeps serving while it runs;
    items that arrive meanwhile form the next batch. `prepare`, if given, maps each item on
    the event loop as it is taken into a batch (late binding: e.g. swap in the newest state).

    A lone cheap batch (nothing else queued, its items costing at most `inline_cost`) runs on
    the event loop itself, through `inline_fn` (default `fn`): with nobody else waiting, the
    two thread hand-offs (and the wake-ups of an idle thread and loop) cost a lone drawer
    more than the loop is blocked. Batches never overlap, so one call runs at a time.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        *,
        max_batch: int = 32,
        max_wait: float = 0.001,
        max_queue: int = 4096,
        max_cost: float = float("inf"),
        inline_cost: float = 0.0,
        inline_fn: Callable[[list[T]], Sequence[R]] | None = None,
        executor: Executor | None = None,
        on_batch: Callable[[BatchStats], None] | None = None,
        prepare: Callable[[T], T] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError("max_batch and max_queue must be >= 1, max_wait >= 0")
        self._fn = fn
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait, max_queue
        self.max_cost = max_cost
        self.inline_cost = inline_cost
        self._inline_fn = inline_fn or fn
        self._executor = executor
        self._own_executor = executor is None
        self._on_batch = on_batch
        self._prepare = prepare
        self._clock = clock  # the wait clock (injectable: tests move it by hand)
        # One queue per key, in turn order: the key served last moves to the end.
        self._queues: dict[Hashable, deque[_Pending[T, R]]] = {}
        self._count = 0
        self._arrived = asyncio.Event()  # the queue became non-empty or reached max_batch
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def __len__(self) -> int:
        """Items queued, not yet dispatched."""
        return self._count

    def start(self) -> None:
        """Start dispatching batches on the running event loop."""
        if self.running:
            return
        self._stopping = False
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="batcher")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Finish the queued items and the batch in flight, then stop. Idempotent."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            self._arrived.set()
            await task
        if self._own_executor and self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def submit(self, item: T, key: Hashable = None, cost: float = 1.0) -> R:
        """Queue `item` (of `key`, costing `cost`), wait for its batch, and return its result
        (or raise fn's error). Raises QueueFull at once when the queue is full,
        BatcherStopped when not running."""
        if not self.running or self._stopping:
            raise BatcherStopped("batcher is not running")
        if self._count >= self.max_queue:
            raise QueueFull(f"{self.max_queue} items already queued")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(key, deque()).append(_Pending(item, future, self._clock(), cost))
        self._count += 1
        if self._count == 1 or self._count >= self.max_batch:
            self._arrived.set()
        return await future

    async def _run(self) -> None:
        while self._count or not self._stopping:
            if not self._count:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if not self._stopping:
                await self._fill(min(q[0].queued_at for q in self._queues.values()))
            batch = self._take()
            if batch:
                await self._dispatch(batch)

    async def _fill(self, first_at: float) -> None:
        """Wait until max_batch items are queued or max_wait has passed since `first_at`."""
        remaining = first_at + self.max_wait - self._clock()
        if self._count >= self.max_batch or remaining <= 0:
            return
        self._arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), remaining)

    def _take(self) -> list[_Pending[T, R]]:
        """The next batch: one item of each key in turn, until max_batch or max_cost."""
        batch: list[_Pending[T, R]] = []
        cost = 0.0
        while self._queues:
            for key in list(self._queues):  # one turn
                queue = self._queues[key]
                if len(batch) >= self.max_batch or (batch and cost + queue[0].cost > self.max_cost):
                    return batch  # this key goes first next time
                pending = queue.popleft()
                self._count -= 1
                del self._queues[key]  # its turn is over: to the back of the line
                if queue:
                    self._queues[key] = queue
                if self._admit(pending):
                    batch.append(pending)
                    cost += pending.cost
        return batch

    def _admit(self, pending: _Pending[T, R]) -> bool:
        """Whether a taken item goes into the batch: not when its caller gave up, nor when
        `prepare` fails it (that fails this item only)."""
        if pending.future.cancelled():
            return False
        if self._prepare is not None:
            try:
                pending.item = self._prepare(pending.item)
            except Exception as exc:
                pending.future.set_exception(exc)
                return False
        return True

    async def _dispatch(self, batch: list[_Pending[T, R]]) -> None:
        loop = asyncio.get_running_loop()
        started = self._clock()
        items = [p.item for p in batch]
        inline = not self._count and sum(p.cost for p in batch) <= self.inline_cost
        try:
            if inline:
                results = self._inline_fn(items)
            else:
                results = await loop.run_in_executor(self._executor, self._fn, items)
            if len(results) != len(batch):
                raise RuntimeError(
                    f"batch function returned {len(results)} results for {len(batch)}"
                )
        except Exception as exc:  # one error reaches every caller of the batch
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
        else:
            for p, result in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(result)
        if self._on_batch is not None:
            waits = tuple(started - p.queued_at for p in batch)
            self._on_batch(BatchStats(len(batch), waits, self._clock() - started))
