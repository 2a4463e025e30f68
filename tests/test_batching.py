"""server/batching.py: the micro-batching contract, with batches held open by an Event."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from server.batching import BatcherStopped, BatchStats, MicroBatcher, QueueFull


class Recorder:
    """A batch function that records its batches and can be held open."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, items: list[int]) -> Sequence[int]:
        self.batches.append(list(items))
        self.entered.set()
        self.gate.wait(10)
        return [i * 10 for i in items]

    async def hold_first(self, batcher: MicroBatcher[int, int], item: int) -> asyncio.Task[int]:
        """Submit `item` and return once its batch is running and held open."""
        self.gate.clear()
        task = asyncio.create_task(batcher.submit(item))
        await asyncio.to_thread(self.entered.wait, 10)
        return task


async def started(fn: Recorder, **kw: Any) -> MicroBatcher[int, int]:
    batcher: MicroBatcher[int, int] = MicroBatcher(fn, **kw)
    batcher.start()
    return batcher


async def stepped(done: Callable[[], bool]) -> None:
    """Run the event loop step by step until `done()` (no wall clock involved)."""
    for _ in range(10_000):
        if done():
            return
        await asyncio.sleep(0)
    raise AssertionError("the loop settled without it")


async def queued(batcher: MicroBatcher[int, int], n: int) -> None:
    """Until `n` items wait in the batcher's queue."""
    await stepped(lambda: len(batcher) >= n)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.asyncio
async def test_items_arriving_during_a_batch_form_the_next_batches() -> None:
    fn = Recorder()
    batcher = await started(fn, max_batch=4, max_wait=0.0)
    first = await fn.hold_first(batcher, 0)
    rest = [asyncio.create_task(batcher.submit(i)) for i in range(1, 7)]
    await queued(batcher, 6)  # queued behind the held batch
    fn.gate.set()
    assert [await first, *(await asyncio.gather(*rest))] == [0, 10, 20, 30, 40, 50, 60]
    assert fn.batches == [[0], [1, 2, 3, 4], [5, 6]]
    await batcher.stop()


@pytest.mark.asyncio
async def test_a_full_batch_goes_at_once() -> None:
    fn = Recorder()
    batcher = await started(fn, max_batch=3, max_wait=30.0)
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(i) for i in range(3))), 10)
    assert results == [0, 10, 20] and fn.batches == [[0, 1, 2]]
    await batcher.stop()


@pytest.mark.asyncio
async def test_the_wait_clock_starts_at_the_first_item() -> None:
    """Item 1 is queued at t=0 while a batch runs; at t=30 (max_wait later, on the injected
    clock) item 2 comes. When the running batch ends, 1 and 2 go at once: counted from item
    2, or from when the batcher got back to its queue, they would wait 30 more seconds."""
    fn, clock = Recorder(), Clock()
    batcher = await started(fn, max_batch=3, max_wait=30.0, clock=clock)
    fn.gate.clear()
    full = [asyncio.create_task(batcher.submit(i)) for i in (10, 11, 12)]  # goes at once
    await asyncio.to_thread(fn.entered.wait, 10)  # ... and is held open
    one = asyncio.create_task(batcher.submit(1))
    await queued(batcher, 1)
    clock.now = 30.0
    two = asyncio.create_task(batcher.submit(2))
    await queued(batcher, 2)
    fn.gate.set()
    async with asyncio.timeout(10):  # a guard: 30 s would mean the clock started late
        assert [*(await asyncio.gather(*full)), await one, await two] == [100, 110, 120, 10, 20]
    assert fn.batches == [[10, 11, 12], [1, 2]]
    await batcher.stop()


@pytest.mark.asyncio
async def test_a_lone_item_waits_max_wait_then_goes() -> None:
    fn, seen = Recorder(), list[BatchStats]()
    batcher = await started(fn, max_batch=64, max_wait=0.2, on_batch=seen.append)
    lone = asyncio.create_task(batcher.submit(4))
    await queued(batcher, 1)
    await stepped(lambda: batcher._task is not None and len(batcher) == 1)
    assert not lone.done() and fn.batches == []  # held for its batch to fill
    assert await asyncio.wait_for(lone, 10) == 40
    assert fn.batches == [[4]] and seen[0].waits[0] >= 0.2 - 0.001  # it went after max_wait
    await batcher.stop()


@pytest.mark.asyncio
async def test_one_exception_reaches_every_caller_of_the_batch() -> None:
    boom = ValueError("model exploded")
    calls: list[list[int]] = []

    def fail(items: list[int]) -> list[int]:
        calls.append(items)
        raise boom

    batcher: MicroBatcher[int, int] = MicroBatcher(fail, max_batch=8, max_wait=0.05)
    batcher.start()
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert results == [boom, boom, boom] and calls == [[0, 1, 2]]
    await batcher.stop()


@pytest.mark.asyncio
async def test_a_batch_function_returning_the_wrong_length_fails_the_batch() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda items: items[:1], max_wait=0.05)
    batcher.start()
    results = await asyncio.gather(*(batcher.submit(i) for i in range(2)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    await batcher.stop()


@pytest.mark.asyncio
async def test_cancelled_callers_are_skipped() -> None:
    fn = Recorder()
    batcher = await started(fn, max_batch=8, max_wait=0.0)
    first = await fn.hold_first(batcher, 0)
    a, b, c = (asyncio.create_task(batcher.submit(i)) for i in (1, 2, 3))
    await queued(batcher, 3)
    b.cancel()
    fn.gate.set()
    assert (await first, await a, await c) == (0, 10, 30)
    assert b.cancelled()
    assert fn.batches == [[0], [1, 3]]
    await batcher.stop()


@pytest.mark.asyncio
async def test_a_full_queue_refuses_at_once() -> None:
    fn = Recorder()
    batcher = await started(fn, max_batch=8, max_wait=0.0, max_queue=2)
    first = await fn.hold_first(batcher, 0)
    waiting = [asyncio.create_task(batcher.submit(i)) for i in (1, 2)]
    await queued(batcher, 2)
    with pytest.raises(QueueFull):
        await batcher.submit(3)
    fn.gate.set()
    assert [await first, *(await asyncio.gather(*waiting))] == [0, 10, 20]
    await batcher.stop()


@pytest.mark.asyncio
async def test_stop_finishes_queued_work_then_refuses() -> None:
    fn = Recorder()
    with pytest.raises(BatcherStopped):
        await MicroBatcher(fn).submit(1)  # type: ignore[arg-type]
    batcher = await started(fn, max_batch=2, max_wait=0.0)
    first = await fn.hold_first(batcher, 0)
    waiting = [asyncio.create_task(batcher.submit(i)) for i in (1, 2, 3)]
    await queued(batcher, 3)
    stopping = asyncio.create_task(batcher.stop())
    await stepped(lambda: not batcher.running)
    with pytest.raises(BatcherStopped):
        await batcher.submit(9)
    fn.gate.set()
    await stopping
    assert [await first, *(await asyncio.gather(*waiting))] == [0, 10, 20, 30]
    assert not batcher.running


@pytest.mark.asyncio
async def test_batch_stats_report_size_and_waits() -> None:
    seen: list[BatchStats] = []
    fn = Recorder()
    batcher: MicroBatcher[int, int] = MicroBatcher(
        fn, max_batch=4, max_wait=0.05, on_batch=seen.append
    )  # type: ignore[arg-type]
    batcher.start()
    await asyncio.gather(*(batcher.submit(i) for i in range(4)))
    await batcher.stop()
    assert [s.size for s in seen] == [4]
    assert len(seen[0].waits) == 4 and all(w >= 0 for w in seen[0].waits)
    assert seen[0].run_s >= 0


@pytest.mark.asyncio
async def test_prepare_maps_items_as_they_leave_the_queue() -> None:
    fn = Recorder()
    latest = {"value": 0}
    batcher: MicroBatcher[int, int] = MicroBatcher(
        fn,  # type: ignore[arg-type]
        max_batch=8,
        max_wait=0.0,
        prepare=lambda item: latest["value"] if item == 1 else item,
    )
    batcher.start()
    first = await fn.hold_first(batcher, 0)
    late = asyncio.create_task(batcher.submit(1))
    await queued(batcher, 1)
    latest["value"] = 5  # the state moved on while the item waited
    fn.gate.set()
    assert (await first, await late) == (0, 50)
    assert fn.batches == [[0], [5]]
    await batcher.stop()


@pytest.mark.asyncio
async def test_a_failing_prepare_fails_only_its_item() -> None:
    fn = Recorder()

    def prepare(item: int) -> int:
        if item == 2:
            raise KeyError("gone")
        return item

    batcher: MicroBatcher[int, int] = MicroBatcher(fn, max_wait=0.05, prepare=prepare)  # type: ignore[arg-type]
    batcher.start()
    results = await asyncio.gather(*(batcher.submit(i) for i in (1, 2, 3)), return_exceptions=True)
    assert results[0] == 10 and isinstance(results[1], KeyError) and results[2] == 30
    assert fn.batches == [[1, 3]]
    await batcher.stop()


@pytest.mark.asyncio
async def test_a_key_with_many_items_cannot_sit_ahead_of_another_key() -> None:
    fn = Recorder()
    batcher = await started(fn, max_batch=3, max_wait=0.0)
    first = await fn.hold_first(batcher, 0)
    flood = [asyncio.create_task(batcher.submit(i, key="flood")) for i in range(100, 106)]
    await queued(batcher, 6)
    healthy = asyncio.create_task(batcher.submit(1, key="healthy"))  # queued last
    await queued(batcher, 7)
    fn.gate.set()
    await asyncio.gather(first, healthy, *flood)
    # one item of each key in turn; the turn goes on from batch to batch
    assert fn.batches == [[0], [100, 1, 101], [102, 103, 104], [105]]
    await batcher.stop()


@pytest.mark.asyncio
async def test_a_batch_stops_before_its_cost_passes_max_cost() -> None:
    fn = Recorder()
    batcher = await started(fn, max_batch=64, max_wait=0.0, max_cost=10.0)
    first = await fn.hold_first(batcher, 0)
    costly = [asyncio.create_task(batcher.submit(i, key=i, cost=6.0)) for i in (1, 2, 3)]
    cheap = [asyncio.create_task(batcher.submit(i, key="c", cost=1.0)) for i in (4, 5)]
    huge = asyncio.create_task(batcher.submit(6, key="h", cost=50.0))  # alone, but served
    await queued(batcher, 6)
    fn.gate.set()
    await asyncio.gather(first, huge, *costly, *cheap)
    assert fn.batches == [[0], [1], [2], [3, 4], [6], [5]]
    await batcher.stop()


@pytest.mark.asyncio
async def test_a_lone_cheap_batch_runs_on_the_loop_and_the_rest_in_the_thread() -> None:
    threads: list[tuple[list[int], bool]] = []
    loop_thread = threading.get_ident()

    def fn(items: list[int]) -> list[int]:
        threads.append((list(items), threading.get_ident() == loop_thread))
        return items

    batcher: MicroBatcher[int, int] = MicroBatcher(fn, max_batch=2, inline_cost=5.0)
    batcher.start()
    assert await batcher.submit(1, cost=5.0) == 1  # alone and cheap: on the loop
    assert await batcher.submit(2, cost=6.0) == 2  # alone but costly: in the thread
    # three at once: the first batch leaves one behind, so it goes to the thread; the last
    # is alone and cheap again
    assert await asyncio.gather(*(batcher.submit(i, cost=1.0) for i in (3, 4, 5))) == [3, 4, 5]
    assert threads == [([1], True), ([2], False), ([3, 4], False), ([5], True)]
    await batcher.stop()
