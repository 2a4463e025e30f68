"""The Redis store's delivery of room logs through each process's inbox, against a real
redis-server: every entry reaches every follower once and in log order, also one its inbox
never got, and a dead process stops receiving copies."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from server.store_redis import LEASE_S, RedisStore
from tests.rediskit import RedisServer

pytestmark = pytest.mark.asyncio


class Heard:
    """A follower that records what it is told and lets a test wait for it."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, bytes]] = []
        self.answers: list[bytes] = []
        self.changed = asyncio.Event()

    async def on_entries(self, room: str, entries: list[tuple[str, bytes]]) -> None:
        self.entries.extend(entries)
        self.changed.set()

    async def on_answers(self, room: str, answers: list[bytes]) -> None:
        self.answers.extend(answers)
        self.changed.set()

    def on_predictor(self, room: str, mine: bool) -> None:
        pass

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not done():
                self.changed.clear()
                await self.changed.wait()


@pytest_asyncio.fixture
async def stores(redis_server: RedisServer) -> AsyncIterator[Callable[..., RedisStore]]:
    prefix = f"t{secrets.token_hex(4)}:"
    made: list[RedisStore] = []

    def make(**kwargs: object) -> RedisStore:
        store = RedisStore(redis_server.url, prefix=prefix, **kwargs)  # type: ignore[arg-type]
        made.append(store)
        return store

    yield make
    for store in made:
        await store.stop()


async def _started(store: RedisStore) -> RedisStore:
    await store.start()
    return store


async def test_followers_get_every_entry_in_order_and_answers_of_others(
    stores: Callable[..., RedisStore],
) -> None:
    a, b = await _started(stores()), await _started(stores())
    keys = await a.create_room("", time.time(), b"seed")
    heard_a, heard_b = Heard(), Heard()
    a.follow(keys.id, keys.log_id, heard_a)
    history = await b.history(keys.id)
    b.follow(keys.id, history[-1][0], heard_b)
    sent = [await (a if i % 2 else b).append(keys.id, f"op{i}".encode()) for i in range(6)]
    a.publish(keys.id, b"answer of a")
    await heard_b.until(lambda: len(heard_b.entries) == 6 and heard_b.answers != [])
    await heard_a.until(lambda: len(heard_a.entries) == 6)
    for heard in (heard_a, heard_b):
        assert heard.entries == [(i, f"op{n}".encode()) for n, i in enumerate(sent)]
    assert heard_b.answers == [b"answer of a"]
    assert heard_a.answers == []  # its own answers are not sent back to it


async def test_an_entry_the_inbox_never_got_is_read_from_the_log(
    stores: Callable[..., RedisStore], redis_server: RedisServer
) -> None:
    """An entry that reached the log but not the follower's inbox (a trimmed inbox, a lost
    reply): the next entry names its predecessor, and the follower reads the log again."""
    a, b = await _started(stores()), await _started(stores())
    keys = await a.create_room("", time.time(), b"seed")
    heard = Heard()
    b.follow(keys.id, keys.log_id, heard)
    first = await a.append(keys.id, b"one")
    await heard.until(lambda: len(heard.entries) == 1)
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        missed = (await raw.xadd(f"{a.prefix}log:{keys.id}", {"o": b"two"})).decode()
    finally:
        await raw.aclose()
    third = await a.append(keys.id, b"three")
    await heard.until(lambda: len(heard.entries) == 3)
    assert heard.entries == [(first, b"one"), (missed, b"two"), (third, b"three")]


async def test_a_process_that_read_the_log_just_before_a_compaction_misses_nothing(
    stores: Callable[..., RedisStore], redis_server: RedisServer
) -> None:
    """A process loading a room reads its log, then follows it from the last entry it read.
    A compaction in between keeps the entries after the one before it: the follower gets
    every entry after what it read, whichever compaction came between."""
    a, b = await _started(stores()), await _started(stores())
    keys = await a.create_room("", time.time(), b"seed")
    sent = [await a.append(keys.id, f"op{i}".encode()) for i in range(4)]
    read = (await b.history(keys.id))[-1][0]  # b loads the room: its log up to op3
    sent += [await a.append(keys.id, f"op{i}".encode()) for i in range(4, 7)]
    await a.compact(keys.id, b"seed as of op6", sent[-1])  # the predictor, meanwhile
    heard = Heard()
    b.follow(keys.id, read, heard)  # from op3 on
    await heard.until(lambda: len(heard.entries) == 4)
    assert [data for _, data in heard.entries] == [b"op4", b"op5", b"op6", b"seed as of op6"]
    raw = aioredis.Redis.from_url(redis_server.url)
    try:  # the next compaction drops what the one before it stood for, and no more
        sent += [await a.append(keys.id, f"op{i}".encode()) for i in range(7, 9)]
        await a.compact(keys.id, b"seed as of op8", sent[-1])
        kept = [fields[b"o"] for _, fields in await raw.xrange(f"{a.prefix}log:{keys.id}")]
        assert kept == [b"seed as of op6", b"op7", b"op8", b"seed as of op8"]
    finally:
        await raw.aclose()


async def test_a_dead_process_leaves_its_rooms_and_its_inbox_goes(
    stores: Callable[..., RedisStore], redis_server: RedisServer
) -> None:
    a = await _started(stores())
    dead = await _started(stores(clock=lambda: time.time() - 10 * LEASE_S))  # seen long ago
    keys = await a.create_room("", time.time(), b"seed")
    heard = Heard()
    dead.follow(keys.id, keys.log_id, heard)
    await a.append(keys.id, b"one")
    await heard.until(lambda: len(heard.entries) == 1)
    for task in dead._tasks:  # it stops answering, as a killed process would
        task.cancel()
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        inbox = f"{a.prefix}inbox:{dead.process}"
        assert await raw.exists(inbox)
        await a.expire_parked(time.time())  # the sweep finds it dead
        assert await raw.smembers(f"{a.prefix}fol:{keys.id}") == set()
        assert not await raw.exists(inbox)
        await a.append(keys.id, b"two")
        assert not await raw.exists(inbox)  # nothing copied to it any more
    finally:
        await raw.aclose()


async def test_appends_go_on_after_redis_forgets_its_scripts(
    stores: Callable[..., RedisStore], redis_server: RedisServer
) -> None:
    """A Redis restarted without its script cache answers NOSCRIPT: the append script is
    loaded again and nothing is lost or doubled."""
    a, b = await _started(stores()), await _started(stores())
    keys = await a.create_room("", time.time(), b"seed")
    heard = Heard()
    b.follow(keys.id, keys.log_id, heard)
    first = await a.append(keys.id, b"one")
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        await raw.script_flush()
    finally:
        await raw.aclose()
    second = await a.append(keys.id, b"two")
    await heard.until(lambda: len(heard.entries) == 2)
    assert heard.entries == [(first, b"one"), (second, b"two")]
    assert [i for i, _ in await b.history(keys.id)] == [keys.log_id, first, second]
